//! The `redwatch` application: engine assembly, the demo, the workload generator and the live
//! view. `main.rs` holds only the command line.

#![forbid(unsafe_code)]

pub mod assembly;
pub mod config;
pub mod demo;
pub mod features;
pub mod generate;
pub mod server;
pub mod sql_cli;
pub mod view;
