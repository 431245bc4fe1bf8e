//! The integration tests: the real binary against a real PostgreSQL.

mod support;

mod accounts;
mod bounded_scans;
mod concurrency;
mod config_changes;
mod config_errors;
mod connection;
mod drain_pass;
mod enqueue;
mod feeding;
mod hosts;
mod hot_path;
mod inputs;
mod integrity;
mod migrations;
mod operations;
mod operator;
mod passes;
mod priority;
mod quota_utilisation;
mod rate_limits;
mod real_clients;
mod real_clients_e2e;
mod report;
mod results;
mod scale;
mod schedulers;
mod security;
mod supervise;
mod tls;
mod waiting;
