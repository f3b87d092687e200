//! Structured logging for nexus-obs.
//!
//! * [`Record`] / [`Event`]: what logd stores, and what a client produces.
//! * [`fields`]: the `key=value\n` convention for structured fields.
//! * [`proto`]: the logd wire contract, shared by clients and the server.
//! * [`json`]: JSON lines with the standard fields (typed values as JSON
//!   numbers and booleans).
//! * [`limits`]: the record limits every logd guarantees.
//! * [`Log`]: the one trait loggers implement; [`LogdSink`] sends to logd,
//!   [`RateLimited`] wraps any `Log`. Compose them like `tracing` layers.
//! * [`LogdClient`]: request/reply access to logd (APPEND, QUERY, STATS).
//! * Macros [`error!`], [`warn!`], [`info!`], [`debug!`], [`trace!`].
//!
//! ```
//! use nexus_log::{info, Event, Log};
//! # #[derive(Default)] struct Vec_(Vec<Event>);
//! # impl Log for Vec_ { fn log(&mut self, e: Event) { self.0.push(e) } }
//! let mut log = Vec_::default();
//! info!(log, "routed {} bytes", 12; peer = 7, "net.proto" = "tcp", ok = true);
//! let e = &log.0[0];
//! assert_eq!(e.message, "routed 12 bytes");
//! assert_eq!(e.fields.as_ref().unwrap().as_str(), "net.proto=tcp\nok:b=true\npeer:i=7\n");
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod client;
pub mod fields;
pub mod json;
mod level;
pub mod limits;
pub mod proto;
pub mod ratelimit;
mod record;
pub mod sink;

pub use client::{ClientError, LogdClient};
pub use fields::{FieldError, FieldType, Fields, FieldsBuilder, Value};
pub use level::Level;
pub use ratelimit::{RateLimitConfig, RateLimited};
pub use record::{Event, Record};
pub use sink::{LogdSink, SinkStats};

/// Something that takes events: a sink, a layer, a test collector.
pub trait Log {
    /// Whether an event at `level` would be kept; the macros skip
    /// formatting when it would not.
    fn enabled(&self, level: Level) -> bool {
        let _ = level;
        true
    }
    /// Takes one event. Must not block.
    fn log(&mut self, event: Event);
}

impl<L: Log + ?Sized> Log for &mut L {
    fn enabled(&self, level: Level) -> bool {
        (**self).enabled(level)
    }
    fn log(&mut self, event: Event) {
        (**self).log(event)
    }
}

#[doc(hidden)]
pub mod __private {
    pub use alloc::borrow::Cow;
    pub use alloc::format;

    use crate::fields::{FieldsBuilder, Value};

    /// A macro field value, for choosing typed or `Display` at the call
    /// site (autoref specialization: [`TypedArg`] is found before
    /// [`DisplayArg`], which needs one more reference).
    pub struct FieldArg<'a, T: ?Sized>(pub &'a T);

    impl<T: ?Sized> core::fmt::Debug for FieldArg<'_, T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("FieldArg")
        }
    }

    /// Numbers and booleans: logged as typed values.
    pub trait IntoValue {
        /// The typed value.
        fn value(&self) -> Value<'_>;
    }

    macro_rules! into_value {
        ($variant:ident as $wide:ty: $($t:ty),*) => {$(
            impl IntoValue for $t {
                fn value(&self) -> Value<'_> {
                    Value::$variant(<$wide>::from(*self))
                }
            }
        )*};
    }
    into_value!(I64 as i64: i8, i16, i32, i64);
    into_value!(U64 as u64: u8, u16, u32, u64);
    into_value!(F64 as f64: f64);
    into_value!(F32 as f32: f32);
    into_value!(Bool as bool: bool);

    impl IntoValue for isize {
        fn value(&self) -> Value<'_> {
            Value::I64(i64::try_from(*self).unwrap_or(i64::MAX))
        }
    }
    impl IntoValue for usize {
        fn value(&self) -> Value<'_> {
            Value::U64(u64::try_from(*self).unwrap_or(u64::MAX))
        }
    }
    impl<T: IntoValue + ?Sized> IntoValue for &T {
        fn value(&self) -> Value<'_> {
            (**self).value()
        }
    }

    /// Typed values win.
    pub trait TypedArg {
        /// Adds the field.
        fn __put(&self, b: &mut FieldsBuilder, key: &str);
    }
    impl<T: IntoValue + ?Sized> TypedArg for FieldArg<'_, T> {
        fn __put(&self, b: &mut FieldsBuilder, key: &str) {
            b.insert_value(key, self.0.value());
        }
    }

    /// Anything else `Display` is a string.
    pub trait DisplayArg {
        /// Adds the field.
        fn __put(&self, b: &mut FieldsBuilder, key: &str);
    }
    impl<T: core::fmt::Display + ?Sized> DisplayArg for &FieldArg<'_, T> {
        fn __put(&self, b: &mut FieldsBuilder, key: &str) {
            b.insert_display(key, &self.0);
        }
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __field_key {
    ($k:ident) => {
        stringify!($k)
    };
    ($k:literal) => {
        $k
    };
}

/// Logs an event at a given level:
/// `log!(logger, level, [target: "t",] "format {}", args...; key = value, "dotted.key" = value)`.
/// Field values are integers, floats and booleans (typed values: JSON
/// numbers and booleans) or anything else `Display` (strings); the format
/// string is the event's rate-limit key.
#[macro_export]
macro_rules! log {
    ($logger:expr, $level:expr, target: $target:expr, $fmt:literal $(, $arg:expr)* $(; $($k:tt = $v:expr),* $(,)?)?) => {{
        let __lvl: $crate::Level = $level;
        if $crate::Log::enabled(&$logger, __lvl) {
            #[allow(unused_mut)]
            let mut __f = $crate::FieldsBuilder::new();
            $($( {
                #[allow(unused_imports)]
                use $crate::__private::{DisplayArg as _, TypedArg as _};
                (&$crate::__private::FieldArg(&$v)).__put(&mut __f, $crate::__field_key!($k));
            } )*)?
            $crate::Log::log(&mut $logger, $crate::Event {
                level: __lvl,
                target: $crate::__private::Cow::Borrowed($target),
                key: $fmt,
                message: $crate::__private::format!($fmt $(, $arg)*),
                fields: __f.build(),
            });
        }
    }};
    ($logger:expr, $level:expr, $fmt:literal $($rest:tt)*) => {
        $crate::log!($logger, $level, target: ::core::module_path!(), $fmt $($rest)*)
    };
}

/// Logs at [`Level::Error`]; see [`log!`].
#[macro_export]
macro_rules! error { ($logger:expr, $($t:tt)+) => { $crate::log!($logger, $crate::Level::Error, $($t)+) }; }
/// Logs at [`Level::Warn`]; see [`log!`].
#[macro_export]
macro_rules! warn { ($logger:expr, $($t:tt)+) => { $crate::log!($logger, $crate::Level::Warn, $($t)+) }; }
/// Logs at [`Level::Info`]; see [`log!`].
#[macro_export]
macro_rules! info { ($logger:expr, $($t:tt)+) => { $crate::log!($logger, $crate::Level::Info, $($t)+) }; }
/// Logs at [`Level::Debug`]; see [`log!`].
#[macro_export]
macro_rules! debug { ($logger:expr, $($t:tt)+) => { $crate::log!($logger, $crate::Level::Debug, $($t)+) }; }
/// Logs at [`Level::Trace`]; see [`log!`].
#[macro_export]
macro_rules! trace { ($logger:expr, $($t:tt)+) => { $crate::log!($logger, $crate::Level::Trace, $($t)+) }; }
