//! The console's handlers against the real RabbitMQ and Redis: each test
//! serves the console for a namespace of its own and talks HTTP to it.

mod auth;
mod common;
mod exceptions;
mod fleet;
mod orders;
