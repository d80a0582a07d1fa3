//! Integration tests of the `mesh` package: its examples and CLI, driven by clients no one here
//! wrote.
#![allow(unreachable_pub)]

mod example;
mod mtls_echo;
