//! [`byte_enum!`]: one-byte enums declared once.

/// Declares a fieldless enum carried on the wire as one byte, with its
/// snake_case name. Generates:
///
/// * `ALL`: every variant, in declaration order;
/// * `from_u8(b) -> Option<Self>` (unknown bytes are `None`, never a panic)
///   and `as_u8(self) -> u8`;
/// * `as_str(self) -> &'static str` and `parse(&str) -> Option<Self>`;
///   a variant may list extra spellings `parse` accepts after its name,
///   `Warn = 3 => "warn" | "warning"` (`as_str` gives the first);
/// * `Display` (the name) and `TryFrom<u8>` (error: [`crate::WireError::BadValue`]).
///
/// ```
/// nexus_wire::byte_enum! {
///     /// A colour.
///     pub enum Colour {
///         /// Red.
///         Red = 1 => "red",
///         /// Dark blue.
///         DarkBlue = 7 => "dark_blue",
///     }
/// }
/// assert_eq!(Colour::from_u8(7), Some(Colour::DarkBlue));
/// assert_eq!(Colour::from_u8(2), None);
/// assert_eq!(Colour::parse("red").map(Colour::as_u8), Some(1));
/// assert_eq!(Colour::ALL.len(), 2);
///
/// nexus_wire::byte_enum! {
///     /// A severity with an alias.
///     pub enum Sev {
///         /// Low.
///         Low = 0 => "low",
///         /// High, also spelt "hi".
///         High = 1 => "high" | "hi",
///     }
/// }
/// assert_eq!(Sev::parse("hi"), Some(Sev::High));
/// assert_eq!(Sev::High.as_str(), "high");
/// ```
#[macro_export]
macro_rules! byte_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $byte:literal => $text:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant = $byte,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Decodes a wire byte; `None` for a byte no variant has.
            pub const fn from_u8(b: u8) -> Option<$name> {
                match b {
                    $($byte => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The wire byte.
            pub const fn as_u8(self) -> u8 {
                self as u8
            }

            /// The snake_case name used in docs, markers and JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses the name given by [`Self::as_str`] (or a declared alias).
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text $(| $alias)* => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::core::convert::TryFrom<u8> for $name {
            type Error = $crate::WireError;
            // Not `Self::Error`: that is ambiguous with a variant named `Error`.
            fn try_from(b: u8) -> Result<$name, $crate::WireError> {
                $name::from_u8(b).ok_or($crate::WireError::BadValue)
            }
        }
    };
}
