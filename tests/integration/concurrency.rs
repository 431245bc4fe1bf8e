//! Concurrent commands that deadlock each other: the loser runs its step again
//! (docs/guarantees.md, "Concurrent commands").

use crate::support::*;

const CONFIG: &str =
    "[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\n[defaults.retention]\ndone_items = \"1d\"\n";

fn insert_sql(key: &str) -> String {
    format!(
        "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
         VALUES ('docs', '{key}', '0', now(), now(), now())"
    )
}

#[test]
fn an_enqueue_that_loses_a_deadlock_moves_its_staged_batch_again() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    fixture.drainctl(&["enqueue", "docs", "--key", "k0", "--payload", "0"]).run().assert_code(0);
    // The batch inserts k1, then waits for the other session's k2, which then inserts k1.
    let lines = "{\"key\": \"k1\", \"payload\": 1}\n{\"key\": \"k2\", \"payload\": 2}\n{\"key\": \"k3\", \"payload\": 3}\n";
    let command = fixture.drainctl(&["enqueue", "docs", "--json"]).stdin(lines);
    let result = fixture.lose_a_deadlock(&insert_sql("k2"), command, &insert_sql("k1"));
    result.assert_code(0);
    assert_eq!(result.json()["added"], 1, "{}", result.stdout);
    assert_eq!(result.json()["duplicates"], 2, "{}", result.stdout);
    assert_eq!(fixture.column::<String>("SELECT key FROM items ORDER BY id"), ["k0", "k2", "k1", "k3"]);
}

#[test]
fn a_retry_that_loses_a_deadlock_runs_its_transaction_again() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    for key in ["d1", "d2"] {
        fixture.drainctl(&["enqueue", "docs", "--key", key, "--payload", "0"]).run().assert_code(0);
    }
    fixture.client().batch_execute("UPDATE items SET state = 'dead', attempts = 3").unwrap();
    let command = fixture.drainctl(&["retry", "docs", "--dead", "--json"]);
    let result = fixture.lose_a_deadlock(
        "SELECT 1 FROM items WHERE key = 'd2' FOR UPDATE",
        command,
        "SELECT 1 FROM items WHERE key = 'd1' FOR UPDATE",
    );
    result.assert_code(0);
    assert_eq!(result.json()["retried"], 2, "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending' AND attempts = 0"), 2);
}

#[test]
fn a_prune_batch_that_loses_a_deadlock_runs_again() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    for key in ["d1", "d2"] {
        fixture.drainctl(&["enqueue", "docs", "--key", key, "--payload", "0"]).run().assert_code(0);
    }
    fixture
        .client()
        .batch_execute(
            "UPDATE items SET state = 'done', finished_at = '2026-11-20T00:00:00Z' WHERE key = 'd1';
             UPDATE items SET state = 'done', finished_at = '2026-11-21T00:00:00Z' WHERE key = 'd2'",
        )
        .unwrap();
    let command = fixture.drainctl(&["prune", "--json"]);
    let result = fixture.lose_a_deadlock(
        "SELECT 1 FROM items WHERE key = 'd2' FOR UPDATE",
        command,
        "SELECT 1 FROM items WHERE key = 'd1' FOR UPDATE",
    );
    result.assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
}
