//! Schedule: when a drain may run, and how long its backlog will take.
//!
//! Everything here is a pure function of an injected "now" and the configured time zone,
//! never the machine's clock or zone. [`when`] reads the `burst on --until` grammar (an
//! operator's deadline); [`window`] says whether a weekly window (`sun-thu 22:00-06:00`)
//! is open and when it next opens; [`cadence`] spaces a drain's starts by its `every`;
//! [`forecast`] turns recent throughput into the time to empty a backlog and whether a
//! burst will finish before its deadline. `supervise` decides with them; `status`,
//! `metrics` and `burst` show them.

pub mod cadence;
pub mod forecast;
pub mod when;
pub mod window;
