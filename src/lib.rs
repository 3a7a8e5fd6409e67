//! The Linux side of uniperf: the TAP runtime, the in-process simulator and the command
//! line that chooses between them. `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod host;
pub mod output;
pub mod sim;
pub mod tap;
