//! The `tollgate` command line.
fn main() {}
