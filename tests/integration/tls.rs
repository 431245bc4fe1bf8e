//! TLS to the database (docs/operations.md, "TLS to the database"). `./scripts/test`
//! starts the cluster with TLS on: a certificate for localhost and 127.0.0.1, signed by a
//! throwaway authority (`DRAINCTL_TEST_TLS_ROOT`); `DRAINCTL_TEST_TLS_OTHER_ROOT` is
//! another authority's, which signed nothing.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
const CONFIG: &str = "[[drain]]\nname = \"a\"\ncommand = [\"FAKE_WORKER\"]\n";

fn authority(variable: &str) -> String {
    std::env::var(variable).ok().filter(|path| !path.is_empty()).unwrap_or_else(|| {
        panic!("{variable} is not set: run the tests with ./scripts/test, which starts the cluster with TLS")
    })
}

/// The fixture's database URL with `query` added (and `localhost` for the host when asked).
fn url_with(fixture: &Fixture, query: &str, localhost: bool) -> String {
    let url =
        if localhost { fixture.db.url.replace("@127.0.0.1:", "@localhost:") } else { fixture.db.url.clone() };
    format!("{url}{}{query}", if url.contains('?') { '&' } else { '?' })
}

fn database_line(stdout: &str) -> &str {
    stdout.lines().find(|line| line.contains("database:")).unwrap_or("")
}

#[test]
fn drainctl_encrypts_when_the_server_offers_tls_and_not_when_told_not_to() {
    let fixture = Fixture::new(CONFIG, NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    result.assert_code(0);
    assert!(database_line(&result.stdout).contains("; encrypted with TLSv1."), "{}", result.stdout);
    let result = fixture
        .drainctl(&["doctor"])
        .env("DRAINCTL_DATABASE_URL", &url_with(&fixture, "sslmode=disable", false))
        .run();
    result.assert_code(0);
    assert!(database_line(&result.stdout).contains("; not encrypted;"), "{}", result.stdout);
    // `require` with a certificate nobody vouches for connects, as libpq's does.
    let result = fixture
        .drainctl(&["status"])
        .env("DRAINCTL_DATABASE_URL", &url_with(&fixture, "sslmode=require", false))
        .run();
    result.assert_code(0);
}

#[test]
fn verify_full_accepts_the_servers_certificate_only_from_the_trusted_authority_and_for_its_host() {
    let fixture = Fixture::new(CONFIG, NOW);
    let root = authority("DRAINCTL_TEST_TLS_ROOT");
    for localhost in [false, true] {
        let url = url_with(&fixture, &format!("sslmode=verify-full&sslrootcert={root}"), localhost);
        let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &url).run();
        result.assert_code(0);
        assert!(database_line(&result.stdout).contains("; encrypted with TLSv1."), "{}", result.stdout);
    }
    // The key=value form reads the same settings.
    let parsed: postgres::Config = fixture.db.url.parse().unwrap();
    let key_values = format!(
        "host=127.0.0.1 port={} user=postgres password='{}' dbname={} sslmode=verify-full sslrootcert='{root}'",
        parsed.get_ports()[0],
        fixture.db.password(),
        fixture.db.name,
    );
    fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &key_values).run().assert_code(0);

    // Another authority: the handshake fails, the reason is named, the password is not.
    let other = authority("DRAINCTL_TEST_TLS_OTHER_ROOT");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = url_with(&fixture, &format!("sslmode={mode}&sslrootcert={other}"), false);
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).run();
        result.assert_code(69);
        assert!(result.stderr.contains("certificate verify failed"), "{mode}: {}", result.stderr);
        assert!(!result.stderr.contains(&fixture.db.password()), "{}", result.stderr);
        // Not OpenSSL's source location (`../ssl/statem/statem_clnt.c:1889:`).
        assert!(!result.stderr.contains(".c:"), "{mode}: {}", result.stderr);
    }
    // Verified by the system's authorities, which do not know the throwaway one.
    let result = fixture
        .drainctl(&["status"])
        .env("DRAINCTL_DATABASE_URL", &url_with(&fixture, "sslmode=verify-ca", false))
        .run();
    result.assert_code(69);
    assert!(result.stderr.contains("certificate verify failed"), "{}", result.stderr);
}

#[test]
fn a_wrong_tls_setting_is_a_configuration_error_naming_it() {
    let fixture = Fixture::new(CONFIG, NOW);
    let missing = fixture.path("missing-ca.pem");
    // A named pipe, which another user could put there: refused without waiting for a
    // writer (before: every command and supervise pass held in its open, for ever).
    let pipe = fixture.path("ca.fifo");
    make_fifo(&pipe, 0o644);
    for (query, fragment) in [
        (
            format!("sslmode=verify-full&sslrootcert={}", pipe.display()),
            "cannot be read: it is not a regular file (a named pipe, a device or a folder)",
        ),
        (
            "sslmode=verify_full".to_string(),
            "`sslmode`: \"verify_full\" is not one of disable, allow, prefer",
        ),
        (format!("sslmode=verify-full&sslrootcert={}", missing.display()), "sslrootcert"),
        ("sslmode=verify-full&sslrootcert=".to_string(), "sslrootcert is empty"),
    ] {
        let url = url_with(&fixture, &query, false);
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).run();
        result.assert_code(78);
        assert!(result.stderr.contains(fragment), "{query}: {}", result.stderr);
        assert!(!result.stderr.contains(&fixture.db.password()), "{}", result.stderr);
        assert_eq!(result.stderr.trim().lines().count(), 1, "{}", result.stderr);
    }
}

#[test]
fn a_bad_setting_of_a_key_value_string_quoting_its_password_does_not_show_it() {
    let fixture = Fixture::new(CONFIG, NOW);
    let password = "Kv9Secret77";
    for form in [
        format!("host=127.0.0.1 password={password} sslmode={password}"),
        format!("host=127.0.0.1 password='{password}' sslmode={password}"),
        // A backslash escapes the next character, as libpq reads it; the last one counts.
        r"host=127.0.0.1 password=Kv9Sec\ret77 sslmode=Kv9Secret77".to_string(),
        format!("host=127.0.0.1 password=first password={password} sslmode={password}"),
        format!("postgresql://postgres@127.0.0.1/db?password={password}&sslmode={password}"),
    ] {
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &form).run();
        result.assert_code(78);
        assert!(result.stderr.contains("`sslmode`"), "{}", result.stderr);
        // Before: the key/value form (unlike a URL) printed the value, the password.
        assert!(!result.stderr.contains(password), "{}", result.stderr);
    }
    // A URL's password written percent-encoded, pasted into sslmode: quoted back decoded.
    for (written, shown) in
        [("Tr0ub%21dor3xyz", "Tr0ub!dor3xyz"), ("Tr0ub%22dor%5C3xyz", r#"Tr0ub\"dor\\3xyz"#)]
    {
        let url = format!("postgres://drainctl:{written}@127.0.0.1/db?sslmode={written}");
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).run();
        result.assert_code(78);
        assert!(result.stderr.contains("`sslmode`"), "{}", result.stderr);
        assert!(!result.stderr.contains(shown) && !result.stderr.contains("Tr0ub"), "{}", result.stderr);
    }
}

/// The fixture's database URL for the role `drainctl_cert`, which the cluster lets in by
/// its client certificate alone (no password), verified, with `query` added.
fn certificate_url(fixture: &Fixture, query: &str) -> String {
    let root = authority("DRAINCTL_TEST_TLS_ROOT");
    let password = format!("postgres:{}@", fixture.db.password());
    assert!(fixture.db.url.contains(&password), "the fixture's URL has the form postgres://postgres:…@…");
    let url = fixture.db.url.replace(&password, "drainctl_cert@");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=verify-full&sslrootcert={root}{query}")
}

#[test]
fn a_client_certificate_logs_in_a_role_the_server_admits_by_certificate() {
    let fixture = Fixture::new(CONFIG, NOW);
    let cert = authority("DRAINCTL_TEST_TLS_CLIENT_CERT");
    let key = authority("DRAINCTL_TEST_TLS_CLIENT_KEY");
    let with = |query: &str| certificate_url(&fixture, query);
    let result = fixture
        .drainctl(&["doctor"])
        .env("DRAINCTL_DATABASE_URL", &with(&format!("&sslcert={cert}&sslkey={key}")))
        .run();
    result.assert_code(0);
    assert!(database_line(&result.stdout).contains("; encrypted with TLSv1."), "{}", result.stdout);
    fixture
        .drainctl(&["status"])
        .env("DRAINCTL_DATABASE_URL", &with(&format!("&sslcert={cert}&sslkey={key}")))
        .run()
        .assert_code(0);
    // Without it the server refuses the role: the database is unavailable (69).
    let refused = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &with("")).run();
    refused.assert_code(69);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);

    // As libpq: a key of root's may be read by its group too (root:ssl-cert 0640), also
    // when drainctl runs as root. Before: refused to root alone.
    if unsafe { libc::geteuid() } == 0 {
        let group_key = fixture.path("group.key");
        std::fs::copy(&key, &group_key).unwrap();
        let status_with_the_key = |mode: u32| {
            std::fs::set_permissions(&group_key, std::fs::Permissions::from_mode(mode)).unwrap();
            let url = with(&format!("&sslcert={cert}&sslkey={}", group_key.display()));
            fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).run()
        };
        status_with_the_key(0o640).assert_code(0);
        // What libpq takes of root's: its owner's bits are its own (0740).
        status_with_the_key(0o740).assert_code(0);
        // Another user's key readable by its group is refused.
        std::os::unix::fs::chown(&group_key, Some(65534), None).unwrap();
        let refused = status_with_the_key(0o640);
        refused.assert_code(78);
        assert!(refused.stderr.contains("has mode 0640"), "{}", refused.stderr);
    }

    // What cannot be used is a configuration error (78), one line naming what to do.
    let open_key = fixture.path("open.key");
    std::fs::copy(&key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let traditional = fixture.path("traditional.key");
    std::fs::write(&traditional, "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n")
        .unwrap();
    std::fs::set_permissions(&traditional, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (query, fragment) in [
        (format!("&sslcert={cert}"), "sslcert is given without sslkey"),
        (
            format!("&sslcert={cert}&sslkey={}", open_key.display()),
            "has mode 0644: other users may read or change the private key; chmod 600 it",
        ),
        (format!("&sslcert={cert}&sslkey={}", traditional.display()), "is not an unencrypted PKCS#8 PEM key"),
        (format!("&sslcert={cert}&sslkey={key}&sslpassword=secret"), "drainctl takes no key password"),
        (format!("&sslcert={}&sslkey={key}", fixture.path("missing.crt").display()), "cannot be read"),
    ] {
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &with(&query)).run();
        result.assert_code(78);
        assert!(result.stderr.contains(fragment), "{query}: {}", result.stderr);
        assert!(!result.stderr.contains("secret"), "{}", result.stderr);
        assert_eq!(result.stderr.trim().lines().count(), 1, "{}", result.stderr);
    }
}

#[test]
fn a_server_that_offers_no_tls_where_sslmode_asks_for_it_is_named_with_the_fix() {
    let fixture = Fixture::new(CONFIG, NOW);
    // A server (or pooler) without TLS: it answers the client's request for TLS with 'N'.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut session, _)) = listener.accept() {
            let mut request = [0u8; 8];
            if session.read_exact(&mut request).is_ok() {
                let _ = session.write_all(b"N");
            }
        }
    });
    let url = format!("postgres://drainctl:secret@127.0.0.1:{port}/drainctl?sslmode=require");
    let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).run();
    server.join().unwrap();
    result.assert_code(69);
    assert!(result.stderr.contains("server does not support TLS"), "{}", result.stderr);
    // Before, the line ended there: nothing said what to change.
    assert!(
        result.stderr.contains("turn ssl on there, or give sslmode=prefer or sslmode=disable"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("secret"), "{}", result.stderr);
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
}
