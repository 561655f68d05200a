//! Sans-IO codecs for corecast.
//!
//! Everything here works on byte slices and caller-owned buffers: no sockets, no clocks, no
//! allocation per message once buffers are warm. That keeps every parser unit-testable,
//! property-testable and fuzzable (see `fuzz/`), the way quinn-proto is separate from quinn.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod glob;
pub mod http;
pub mod json;
pub mod native;
pub mod resp;
pub mod sse;
pub mod ws;
