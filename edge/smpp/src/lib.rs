//! siphon smpp protocol core. Sans-IO: no sockets, no clock reads, no threads, no Python.
#![forbid(unsafe_code)]
