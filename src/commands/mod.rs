//! The subcommands, one file each: parse the arguments, call the domain, render the
//! result as a [`crate::output::Report`].

pub(crate) mod burst;
pub(crate) mod controls;
pub(crate) mod doctor;
pub(crate) mod enqueue;
pub(crate) mod events;
pub(crate) mod items;
pub(crate) mod migrate;
pub(crate) mod quota;
pub(crate) mod retry;
pub(crate) mod runs;
pub(crate) mod status;
