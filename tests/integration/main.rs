//! The integration tests: the real binary against a real PostgreSQL.

mod support;

mod accounts;
mod config_errors;
mod connection;
mod drain_pass;
mod enqueue;
mod feeding;
mod hosts;
mod inputs;
mod integrity;
mod migrations;
mod operations;
mod operator;
mod quota_utilisation;
mod rate_limits;
mod real_clients;
mod scale;
mod security;
mod supervise;
mod waiting;
