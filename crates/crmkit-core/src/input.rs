//! Helpers for a module's input types, so that every module writes them the same way:
//! [`setters!`](crate::setters) for the chainable builder methods of a `New*` input or a
//! `*Patch`, and [`apply_patch!`](crate::apply_patch) for copying a patch's `Some` fields
//! onto a record.

/// Chainable setters of an input's fields, named like the fields (each with the rustdoc
/// written above it):
///
/// - `some name: T`: the field is an `Option<T>`, set to `Some(value)` (for a patch's
///   `Option<Option<T>>`, write `some name: Option<T>` and pass `None` to clear);
/// - `set name: T`: the field is a `T`, set to the value;
/// - `push name(field): T`: the value is pushed onto the `Vec<T>` field `field`.
///
/// These take `impl Into<T>`. `val name: T` sets a `T` field from exactly a `T` (for
/// integers, where `impl Into` would not accept a plain literal).
///
/// ```
/// #[derive(Default)]
/// struct NewThing {
///     name: String,
///     note: Option<String>,
///     size: u32,
///     tags: Vec<String>,
/// }
///
/// impl NewThing {
///     crmkit_core::setters! {
///         /// With a name.
///         set name: String;
///         /// With a note.
///         some note: String;
///         /// Of a size.
///         val size: u32;
///         /// With a tag.
///         push tag(tags): String;
///     }
/// }
///
/// let t = NewThing::default().name("a").note("b").size(3).tag("x").tag("y");
/// assert_eq!((t.name.as_str(), t.note.as_deref(), t.size), ("a", Some("b"), 3));
/// assert_eq!(t.tags, ["x", "y"]);
/// ```
#[macro_export]
macro_rules! setters {
    (@one [$($doc:tt)*] some $name:ident: $ty:ty) => {
        $($doc)*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
    (@one [$($doc:tt)*] set $name:ident: $ty:ty) => {
        $($doc)*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = value.into();
            self
        }
    };
    (@one [$($doc:tt)*] val $name:ident: $ty:ty) => {
        $($doc)*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$name = value;
            self
        }
    };
    (@one [$($doc:tt)*] push $name:ident($field:ident): $ty:ty) => {
        $($doc)*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$field.push(value.into());
            self
        }
    };
    ($($(#[$doc:meta])* $how:ident $name:ident $(($field:ident))?: $ty:ty;)*) => {
        $($crate::setters!(@one [$(#[$doc])*] $how $name $(($field))?: $ty);)*
    };
}

/// Copies the `Some` fields of a patch onto a record:
/// `apply_patch!(patch => new; name, status)` is
/// `if let Some(v) = patch.name { new.name = v; }` and the same for `status` (the fields
/// are moved out of the patch).
///
/// ```
/// struct Thing { name: String, size: u32 }
/// struct ThingPatch { name: Option<String>, size: Option<u32> }
///
/// let mut t = Thing { name: "a".into(), size: 1 };
/// let patch = ThingPatch { name: None, size: Some(2) };
/// crmkit_core::apply_patch!(patch => t; name, size);
/// assert_eq!((t.name.as_str(), t.size), ("a", 2));
/// ```
#[macro_export]
macro_rules! apply_patch {
    ($patch:ident => $target:ident; $($field:ident),+ $(,)?) => {
        $(if let Some(v) = $patch.$field {
            $target.$field = v;
        })+
    };
}
