//! (being written)

use crate::Console;
use crate::auth::Session;
use crate::layout::{self, PageResult};
use axum::extract::State;
use maud::html;

pub async fn page(State(console): State<Console>, session: Session) -> PageResult {
    Ok(layout::page(
        &console,
        &session,
        "Fleet",
        html! { h1 { "Fleet" } },
    ))
}
