//! Integration tests of the `mesh` package: its examples and CLI, driven by clients no one here
//! wrote.
#![allow(unreachable_pub)]

mod dashboard;
mod demo;
mod embed_layers;
mod emojivoto;
mod example;
mod http;
mod local;
mod mtls_echo;
mod prometheus;
mod wait;
