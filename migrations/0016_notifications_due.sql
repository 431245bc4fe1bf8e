-- An event that waits for the notifier (docs/configuration.md, "Notifications"): written
-- by the statement that records the event, so it exists exactly when the event committed;
-- claimed (claimed_at) by the process that runs the notifier for it, removed once it ran.
-- A process that dies before or while notifying leaves its row, and the next supervise
-- pass notifies it. No foreign key (no check per deleted event): prune removes a row in
-- the statement that deletes its event.
CREATE TABLE notifications_due (
    event_id bigint PRIMARY KEY,
    claimed_at timestamptz
);
