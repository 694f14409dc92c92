//! The macro behind the method table (`methods/mod.rs` holds the one table): from one row
//! per method it makes the `Method` enum (name, kind, effect, permission), the typed `Request`
//! a call decodes into (with the `Need` its permission asks of the caller), and one
//! marker type per method in `call` tying the method to its argument and result types,
//! which typed clients call through.

/// Defines `Method`, `Request` and the `call` markers from the method table.
macro_rules! method_table {
    (
        $(
            $(#[doc = $doc:literal])*
            $variant:ident = ($name:literal, $args:ty => $result:ty, $kind:ident, $effect:ident, $permission:ident $(($field:ident))?),
        )+
    ) => {
        /// A method of the protocol, as named in a call's `m`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Method {
            /// Every method, in table order.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)+];

            /// The name sent on the wire.
            pub fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => $name,)+
                }
            }

            /// The method called `name`, if there is one.
            pub fn parse(name: &str) -> Option<Method> {
                match name {
                    $($name => Some(Method::$variant),)+
                    _ => None,
                }
            }

            /// How a connection runs the method.
            pub fn kind(self) -> MethodKind {
                match self {
                    $(Method::$variant => MethodKind::$kind,)+
                }
            }

            /// Whether the method changes the service's state.
            pub fn effect(self) -> Effect {
                match self {
                    $(Method::$variant => Effect::$effect,)+
                }
            }

            /// Who may call the method.
            pub fn permission(self) -> Permission {
                match self {
                    $(Method::$variant => Permission::$permission,)+
                }
            }
        }

        impl std::fmt::Display for Method {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        /// A call decoded into the arguments of its method.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($variant($args),)+
        }

        impl Request {
            /// Decodes `args` (a map, or nil for none) as the arguments of `method`.
            pub fn decode(method: Method, args: Value) -> Result<Request, WireError> {
                Ok(match method {
                    $(Method::$variant => Request::$variant(from_value(args)?),)+
                })
            }

            /// Decodes the msgpack `args` (a map, or nil for none) as the arguments of
            /// `method` straight from the bytes; `None` unless they are exactly one
            /// value that decodes into them (then decode a `Value` with `decode`, whose
            /// error says what is wrong).
            pub fn decode_msgpack(method: Method, args: &[u8]) -> Option<Request> {
                Some(match method {
                    $(Method::$variant => Request::$variant(from_msgpack(args)?),)+
                })
            }

            /// The method called.
            pub fn method(&self) -> Method {
                match self {
                    $(Request::$variant(_) => Method::$variant,)+
                }
            }

            /// What the call needs of its caller: the method's permission, with the
            /// database or user its arguments name.
            pub fn need(&self) -> Need<'_> {
                match self {
                    $(Request::$variant(args) => method_table!(@need args, $permission $(($field))?),)+
                }
            }
        }

        /// One type per method, tying it to its argument and result types (see `Call`).
        pub mod call {
            $(
                $(#[doc = $doc])*
                pub struct $variant;
            )+
        }

        $(
            impl Call for call::$variant {
                const METHOD: Method = Method::$variant;
                type Args = $args;
                type Result = $result;
            }
        )+
    };
    (@need $args:ident, $permission:ident ($field:ident)) => {
        Need::$permission(&$args.$field)
    };
    (@need $args:ident, $permission:ident) => {{
        let _ = $args;
        Need::$permission
    }};
}

pub(crate) use method_table;
