//! # orderflow-stages
//!
//! What each stage does with an order (docs/design.md §4), as
//! [`orderflow_runtime::StageLogic`]s the runtime settles, and the
//! reconciler that tracks what happens after the stages.

mod cancel;
mod deadline;
pub mod downstreams;
pub mod events;
mod fulfilment;
mod ingress;
pub mod inventory;
mod observe;
pub mod operation;
pub mod payment;
pub mod reconciler;
pub mod retention;
pub mod route;
pub mod shipping;

pub use downstreams::{Downstreams, Urls};
pub use inventory::InventoryStage;
pub use operation::{Confirmation, commit_reservation, undo};
pub use payment::PaymentStage;
pub use reconciler::Reconciler;
pub use route::{Foresight, foresee};
pub use shipping::ShippingStage;
