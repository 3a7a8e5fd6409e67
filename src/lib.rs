//! The Linux side of uniperf: the TAP runtime, the in-process simulator, the flow-log tools
//! (`plot`, `collect`, `flowlog`) and the command line that chooses between them. `main.rs`
//! only calls [`cli::main`].

pub mod cli;
pub mod collect;
pub mod compare;
pub mod flowlog_cmd;
pub mod heap;
pub mod logger;
pub mod machine;
pub mod output;
pub mod plot;
pub mod signals;
pub mod sim;
pub mod tap;
