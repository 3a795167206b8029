//! Record kinds as described, first-class things, and the generic record API.
//!
//! Every module declares the record kinds it owns through [`Module::record_kinds`]: for
//! each, a [`KindHandler`] that describes the kind ([`KindDescription`]: its fields with
//! their types, which of them are required, read-only or personal data, which kind a
//! reference field points to, which names a query may filter and sort on, its events and
//! its lifecycle) and runs the generic operations (get, list, create, patch, delete,
//! restore, audit) through the module's own typed API, so that a command through the
//! generic API is exactly the command of the typed one: same validation, same access
//! rules, same derived writes, same events.
//!
//! [`Records`] (from [`Store::records`]) is that API by kind name and JSON values (bodies
//! are `serde_json::Value` objects; records come back as a [`Record`], the JSON text of the
//! typed record, serialised once, whose fields read as values), which is
//! what everything that must treat every kind alike builds on (automation, an HTTP API and
//! its OpenAPI document, import and export, merge, privacy export, sync). Before a body
//! reaches a handler, [`Records`] checks it against the description: an unknown field, a
//! read-only or computed field, a value of the wrong JSON type, a
//! value outside its choices, a malformed id are Validation errors naming the field (and,
//! in [`ValidationErrors::kind`], the kind); nothing is written.
//!
//! ## References obey access, in one place
//!
//! [`Records::visible`] decides every reference and lookup: a reference to a record the
//! actor cannot see behaves exactly like a reference to a record that does not exist.
//! Modules check their reference fields with [`Records::check_reference`] and filter
//! lookups (by email, by phone) through [`Records::visible`], so no message, count or
//! lookup tells a caller that a hidden record exists.
//!
//! ```
//! use crmkit_core::record::{FieldDescription, FieldType, KindDescription};
//!
//! let kind = KindDescription::new("vehicle", "Vehicle", "Vehicles", "fleet")
//!     .field(FieldDescription::new("plate", FieldType::text(16)).required())
//!     .field(FieldDescription::new("driver", FieldType::reference("contact")).nullable());
//! let json = serde_json::to_value(&kind).unwrap();
//! assert_eq!(json["fields"][1]["type"]["reference"], "contact");
//! ```
//!
//! [`Module::record_kinds`]: crate::Module::record_kinds
//! [`Store::records`]: crate::Store::records

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, NaiveDate};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::Store;
use crate::ctx::Ctx;
use crate::custom::CustomFieldDef;
use crate::error::{Error, Result, ValidationErrors};
use crate::event::AuditEntry;
use crate::id::{RecordKind, RecordRef};
use crate::query::{FieldType as QueryType, Page, Query, RecordFields};
use crate::store::BoxFuture;

/// A record as JSON: an object whose keys are the kind's field names.
pub type Json = serde_json::Value;
/// A body of field values.
pub type JsonMap = serde_json::Map<String, Json>;

/// A record as the generic API returns it: the JSON object of its fields (keys are the
/// kind's field names), serialised once, straight from the module's typed record.
///
/// The JSON text is what an HTTP API writes out as is ([`Record::json`]; serialising a
/// `Record` with serde_json writes the same text, without re-encoding it). The fields are
/// parsed into a [`Json`] value the first time one is read ([`Record::get`],
/// [`Record::value`], indexing), once per record, so a caller that only passes the record
/// on pays for no value tree, and one that reads fields (automation) reads them like a
/// `serde_json::Value`:
///
/// ```
/// use crmkit_core::record::Record;
///
/// let r = Record::from_typed(&serde_json::json!({"id": "x", "version": 3, "tags": ["a"]}))?;
/// assert_eq!(r.json(), r#"{"id":"x","tags":["a"],"version":3}"#);
/// assert_eq!(r.version(), Some(3));
/// assert_eq!(r["tags"][0], "a");
/// assert!(r.get("nope").is_none());
/// assert_eq!(serde_json::to_string(&r).unwrap(), r.json());
/// # Ok::<(), crmkit_core::Error>(())
/// ```
///
/// Two records are equal when their JSON values are (key order and number formatting
/// aside). `Record` implements `Serialize` for serde_json only (it writes the raw text);
/// for another format, serialise [`Record::value`].
pub struct Record {
    text: Box<RawValue>,
    value: OnceLock<Json>,
}

impl Record {
    /// Serialises a typed record (anything that serialises to a JSON object). A record
    /// whose `Serialize` fails (a map with non-string keys, a custom impl's error) is a
    /// Storage error naming the cause, never a panic.
    pub fn from_typed<T: Serialize + ?Sized>(record: &T) -> Result<Record> {
        let text = serde_json::value::to_raw_value(record)
            .map_err(|e| Error::storage(format!("a record does not serialise to JSON: {e}")))?;
        Ok(Record {
            text,
            value: OnceLock::new(),
        })
    }

    /// The record's JSON text, as it goes out (an HTTP response body).
    pub fn json(&self) -> &str {
        self.text.get()
    }

    /// The record's JSON text as a [`RawValue`] (to embed it in another serde_json
    /// document unchanged).
    pub fn raw(&self) -> &RawValue {
        &self.text
    }

    /// The record as a JSON value, parsed from its text on first use.
    pub fn value(&self) -> &Json {
        self.value.get_or_init(|| {
            serde_json::from_str(self.text.get()).expect("a record's own JSON parses")
        })
    }

    /// The record as a JSON value, owned.
    pub fn into_value(self) -> Json {
        let Record { text, value } = self;
        match value.into_inner() {
            Some(v) => v,
            None => serde_json::from_str(text.get()).expect("a record's own JSON parses"),
        }
    }

    /// The fields, by name.
    pub fn fields(&self) -> &JsonMap {
        static EMPTY: OnceLock<JsonMap> = OnceLock::new();
        self.value()
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(JsonMap::new))
    }

    /// Field `name`'s value (`None` when the record has no such field).
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.value().get(name)
    }

    /// The record's `id`.
    pub fn id(&self) -> Option<Uuid> {
        self.get("id")
            .and_then(Json::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    }

    /// The record's `version`, for callers chaining generic calls (see [`version_of`]).
    pub fn version(&self) -> Option<u64> {
        version_of(self.value())
    }
}

impl From<Json> for Record {
    fn from(v: Json) -> Record {
        // A `Value` always serialises (string keys, finite numbers), so the fallback to
        // `null` is never taken; it keeps this conversion free of panics.
        let text = serde_json::value::to_raw_value(&v).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".into()).unwrap_or_default()
        });
        let r = Record {
            text,
            value: OnceLock::new(),
        };
        // The value is at hand: reading fields need not parse the text again.
        let _ = r.value.set(v);
        r
    }
}

impl Clone for Record {
    fn clone(&self) -> Record {
        Record {
            text: self.text.clone(),
            value: self.value.clone(),
        }
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json())
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.json())
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.json() == other.json() || self.value() == other.value()
    }
}

impl PartialEq<Json> for Record {
    fn eq(&self, other: &Json) -> bool {
        self.value() == other
    }
}

impl std::ops::Index<&str> for Record {
    type Output = Json;
    /// Field `name`'s value, `null` when there is none (as indexing a `Json` object).
    fn index(&self, name: &str) -> &Json {
        &self.value()[name]
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Record, D::Error> {
        Json::deserialize(d).map(Record::from)
    }
}

/// The type of a described field, as its JSON value has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A string of at most `max_length` characters.
    Text {
        /// The longest value, in characters.
        max_length: u32,
    },
    /// A whole number.
    Int,
    /// A decimal number, as a JSON string (`"12.50"`) or number.
    Decimal,
    /// Money: `{"amount": "12.50", "currency": "EUR"}`.
    Money,
    /// An ISO 4217 currency code.
    Currency,
    /// `true` or `false`.
    Bool,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339.
    Timestamp,
    /// The record's own id, or another id that is not a record reference.
    Id,
    /// The id of a record of the named kind.
    Reference(RecordKind),
    /// A `{"kind": .., "id": ..}` reference to a record of one of the named kinds (any
    /// kind when empty).
    AnyReference(Vec<RecordKind>),
    /// One of fixed strings.
    Choice(Vec<String>),
    /// A list of values of one type.
    List(Box<FieldType>),
    /// A JSON object whose shape the field's documentation gives.
    Object,
    /// The record's custom values: an object of `key -> value` by the tenant's custom
    /// field definitions (see [`KindDescription::custom_fields`]).
    Custom,
}

impl FieldType {
    /// Text of at most `max_length` characters.
    pub fn text(max_length: u32) -> Self {
        FieldType::Text { max_length }
    }
    /// A reference to a record of `kind`.
    pub fn reference(kind: &'static str) -> Self {
        FieldType::Reference(RecordKind::new(kind))
    }
    /// One of `choices`.
    pub fn choice(choices: &[&str]) -> Self {
        FieldType::Choice(choices.iter().map(|s| (*s).to_owned()).collect())
    }
    /// A list of `of`.
    pub fn list(of: FieldType) -> Self {
        FieldType::List(Box::new(of))
    }

    fn describe(&self) -> String {
        match self {
            FieldType::Text { .. } => "a string".into(),
            FieldType::Int => "a whole number".into(),
            FieldType::Decimal => "a decimal number".into(),
            FieldType::Money => "money ({\"amount\", \"currency\"})".into(),
            FieldType::Currency => "a currency code".into(),
            FieldType::Bool => "true or false".into(),
            FieldType::Date => "a date (YYYY-MM-DD)".into(),
            FieldType::Timestamp => "an RFC 3339 timestamp".into(),
            FieldType::Id => "an id".into(),
            FieldType::Reference(k) => format!("the id of a {k}"),
            FieldType::AnyReference(_) => "a {\"kind\", \"id\"} reference".into(),
            FieldType::Choice(c) => format!("one of {}", c.join(", ")),
            FieldType::List(of) => format!("a list of {}", of.describe()),
            FieldType::Object | FieldType::Custom => "an object".into(),
        }
    }
}

/// Who writes a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAccess {
    /// Given on create and changed by patches.
    ReadWrite,
    /// Given on create only.
    CreateOnly,
    /// Written by crmkit (ids, versions, timestamps, state changed by dedicated
    /// commands); a body that carries it is refused.
    ReadOnly,
    /// Derived from other fields; a body that carries it is refused.
    Computed,
}

/// One field of a record kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDescription {
    /// The field's name: its key in the record's JSON and in bodies.
    pub name: String,
    /// Its JSON type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Whether a create must give it.
    pub required: bool,
    /// Whether it may be `null` (or is absent when it has no value).
    pub nullable: bool,
    /// Who writes it.
    pub access: FieldAccess,
    /// Whether it holds personal data (privacy export and erasure).
    pub personal: bool,
    /// The name a [`Query`] filters on for this field, if it can be filtered.
    pub filter: Option<String>,
    /// Whether a [`Query`] can sort on it.
    pub sortable: bool,
    /// What it means, in words.
    pub doc: String,
}

impl FieldDescription {
    /// A read-write, optional, non-null field.
    pub fn new(name: &str, ty: FieldType) -> Self {
        FieldDescription {
            name: name.to_owned(),
            ty,
            required: false,
            nullable: false,
            access: FieldAccess::ReadWrite,
            personal: false,
            filter: None,
            sortable: false,
            doc: String::new(),
        }
    }
    /// Required on create.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// May be null.
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    /// Written by crmkit only.
    pub fn read_only(mut self) -> Self {
        self.access = FieldAccess::ReadOnly;
        self
    }
    /// Derived from other fields.
    pub fn computed(mut self) -> Self {
        self.access = FieldAccess::Computed;
        self
    }
    /// Given on create only.
    pub fn create_only(mut self) -> Self {
        self.access = FieldAccess::CreateOnly;
        self
    }
    /// Holds personal data.
    pub fn personal(mut self) -> Self {
        self.personal = true;
        self
    }
    /// Its documentation.
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_owned();
        self
    }
    /// Whether bodies may carry it on create.
    pub fn writable_on_create(&self) -> bool {
        matches!(
            self.access,
            FieldAccess::ReadWrite | FieldAccess::CreateOnly
        )
    }
}

/// A name a [`Query`] of a kind may filter and sort on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryField {
    /// The name in filters and sorts.
    pub name: String,
    /// The type of the values a filter on it takes.
    #[serde(rename = "type")]
    pub ty: String,
    /// Whether `contains` / `starts_with` work on it (case-insensitively).
    pub text_search: bool,
    /// Whether it may have no value (`is_null`).
    pub nullable: bool,
}

/// How a kind's records live and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Whether the generic API can create records of the kind.
    pub create: bool,
    /// Whether the generic API can patch them.
    pub patch: bool,
    /// Deletes are soft (`deleted_at`), and deleted records can be listed with
    /// `include_deleted`.
    pub soft_delete: bool,
    /// Soft-deleted records can be restored.
    pub restore: bool,
    /// Records carry a version; changes name the version they are based on.
    pub versioned: bool,
    /// Every change writes audit entries.
    pub audit: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            create: true,
            patch: true,
            soft_delete: true,
            restore: true,
            versioned: true,
            audit: true,
        }
    }
}

/// A field of another kind that refers to a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// The kind holding the reference.
    pub kind: RecordKind,
    /// Its field.
    pub field: String,
}

/// A record kind, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDescription {
    /// Its name (`contact`).
    pub kind: RecordKind,
    /// Singular label (`Contact`).
    pub label: String,
    /// Plural label (`Contacts`).
    pub plural: String,
    /// The module that owns it.
    pub module: String,
    /// What it is, in words.
    pub doc: String,
    /// Its built-in fields.
    pub fields: Vec<FieldDescription>,
    /// The names a [`Query`] may filter and sort on (`custom.<key>` as well when the kind
    /// has custom fields).
    pub query: Vec<QueryField>,
    /// Whether the kind has tenant-defined custom fields (a `custom` object).
    pub has_custom_fields: bool,
    /// The tenant's custom field definitions (filled by [`Records::describe`]).
    pub custom_fields: Vec<CustomFieldDef>,
    /// The fields of other kinds that refer to this one (filled from every kind's
    /// reference fields when the modules are composed).
    pub relations: Vec<Relation>,
    /// The event kinds its records emit.
    pub events: Vec<String>,
    /// Its lifecycle.
    pub lifecycle: Lifecycle,
}

impl KindDescription {
    /// A kind with no fields yet, the default [`Lifecycle`], and the usual
    /// `<kind>.created/updated/deleted/restored` events.
    pub fn new(kind: &'static str, label: &str, plural: &str, module: &str) -> Self {
        KindDescription {
            kind: RecordKind::new(kind),
            label: label.to_owned(),
            plural: plural.to_owned(),
            module: module.to_owned(),
            doc: String::new(),
            fields: vec![],
            query: vec![],
            has_custom_fields: false,
            custom_fields: vec![],
            relations: vec![],
            events: ["created", "updated", "deleted", "restored"]
                .iter()
                .map(|v| format!("{kind}.{v}"))
                .collect(),
            lifecycle: Lifecycle::default(),
        }
    }
    /// Its documentation.
    pub fn doc(mut self, doc: &str) -> Self {
        self.doc = doc.to_owned();
        self
    }
    /// Adds a field.
    pub fn field(mut self, f: FieldDescription) -> Self {
        self.fields.push(f);
        self
    }
    /// Adds the usual record fields: `id`, `owner`, `team`, `tags` (when `tags`),
    /// `created_at`, `updated_at`, `deleted_at`, `version` — call it where they belong in
    /// the JSON order; `owner`/`team` are added by [`Self::owned`].
    pub fn system_fields(self) -> Self {
        self.field(FieldDescription::new("created_at", FieldType::Timestamp).read_only())
            .field(FieldDescription::new("updated_at", FieldType::Timestamp).read_only())
            .field(
                FieldDescription::new("deleted_at", FieldType::Timestamp)
                    .nullable()
                    .read_only(),
            )
            .field(FieldDescription::new("version", FieldType::Int).read_only())
    }
    /// Adds `id` (read-only).
    pub fn id_field(self) -> Self {
        self.field(FieldDescription::new("id", FieldType::Id).read_only())
    }
    /// Adds `owner` (a user; the actor when absent) and `team` (nullable).
    pub fn owned(self) -> Self {
        self.field(FieldDescription::new("owner", FieldType::reference("user")))
            .field(FieldDescription::new("team", FieldType::reference("team")).nullable())
    }
    /// Adds `custom` and marks the kind as having custom fields.
    pub fn with_custom(mut self) -> Self {
        self.has_custom_fields = true;
        self.field(FieldDescription::new("custom", FieldType::Custom))
    }
    /// Sets the lifecycle.
    pub fn lifecycle(mut self, l: Lifecycle) -> Self {
        self.lifecycle = l;
        self
    }
    /// Replaces the event kinds.
    pub fn events(mut self, events: &[&str]) -> Self {
        self.events = events.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// Takes the query names from the kind's [`RecordFields`]: every field a query may
    /// filter on is listed in [`Self::query`], and a described field whose name is a query
    /// field is marked filterable and sortable.
    pub fn queryable(mut self, fields: &RecordFields) -> Self {
        for f in fields.fields {
            let ty = match f.ty {
                QueryType::Uuid => "id".to_owned(),
                QueryType::Text => "text".to_owned(),
                QueryType::Int => "int".to_owned(),
                QueryType::Bool => "bool".to_owned(),
                QueryType::Decimal => "decimal".to_owned(),
                QueryType::Timestamp => "timestamp".to_owned(),
                QueryType::Date => "date".to_owned(),
                QueryType::Enum(c) => format!("choice({})", c.join("|")),
            };
            self.query.push(QueryField {
                name: f.name.to_owned(),
                ty,
                text_search: f.fold_column.is_some(),
                nullable: f.nullable,
            });
        }
        for d in &mut self.fields {
            if self.query.iter().any(|q| q.name == d.name) {
                d.filter = Some(d.name.clone());
                d.sortable = true;
            }
        }
        self
    }
    /// Marks field `name` as filtered through query name `query_name` (when the names
    /// differ, such as a contact's `organization` and the query's `organization_id`).
    pub fn filter_as(mut self, name: &str, query_name: &str) -> Self {
        if let Some(d) = self.fields.iter_mut().find(|d| d.name == name) {
            d.filter = Some(query_name.to_owned());
            d.sortable = true;
        }
        self
    }
    /// The field `name`.
    pub fn get(&self, name: &str) -> Option<&FieldDescription> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The generic operations of one record kind, implemented by the module that owns it by
/// calling its own typed API. Object-safe; the futures borrow their arguments.
///
/// Bodies reach `create` and `patch` already checked against [`KindHandler::describe`]
/// (known, writable fields with values of the right JSON type); the handler turns them
/// into its typed input (usually with [`from_body`]) and runs the typed command.
pub trait KindHandler: Send + Sync + 'static {
    /// The kind's description (without tenant custom fields and relations, which the
    /// registry adds).
    fn describe(&self) -> KindDescription;

    /// The kind's description in a composition whose declared kinds are `composed`: a
    /// kind whose reference fields may point at kinds of optional modules (activities
    /// relate to tickets when the tickets module is composed) names only the composed
    /// ones here. The registry keeps this description. The default is
    /// [`KindHandler::describe`].
    fn describe_in(&self, composed: &[RecordKind]) -> KindDescription {
        let _ = composed;
        self.describe()
    }

    /// A record visible to the actor and not deleted.
    fn get<'a>(&'a self, store: &'a Store, ctx: &'a Ctx, id: Uuid)
    -> BoxFuture<'a, Result<Record>>;

    /// A page of visible records.
    fn list<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        q: &'a Query,
    ) -> BoxFuture<'a, Result<Page<Record>>>;

    /// Creates a record.
    fn create<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        body: JsonMap,
    ) -> BoxFuture<'a, Result<Record>> {
        let _ = (store, ctx, body);
        Box::pin(async move { Err(unsupported(&self.describe().kind, "create")) })
    }

    /// Changes a record whose version is `expected_version`.
    fn patch<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
        body: JsonMap,
    ) -> BoxFuture<'a, Result<Record>> {
        let _ = (store, ctx, id, expected_version, body);
        Box::pin(async move { Err(unsupported(&self.describe().kind, "patch")) })
    }

    /// Soft-deletes a record.
    fn delete<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<Record>> {
        let _ = (store, ctx, id, expected_version);
        Box::pin(async move { Err(unsupported(&self.describe().kind, "delete")) })
    }

    /// Restores a soft-deleted record.
    fn restore<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<Record>> {
        let _ = (store, ctx, id, expected_version);
        Box::pin(async move { Err(unsupported(&self.describe().kind, "restore")) })
    }

    /// The audit trail of a visible record (deleted ones included), oldest first.
    fn audit<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
    ) -> BoxFuture<'a, Result<Vec<AuditEntry>>>;

    /// Whether the record exists, is not deleted and is visible to the actor. The default
    /// asks [`KindHandler::get`].
    fn visible<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match self.get(store, ctx, id).await {
                Ok(_) => Ok(true),
                Err(Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }
}

/// A record kind served by a module's typed API: the easy way to implement
/// [`KindHandler`]. Wrap it with [`typed`]; the adapter turns bodies into `New` and `Patch`
/// with [`from_body`] and records into JSON, so a kind only says which typed calls serve
/// it. Operations a kind does not offer keep the default (an error saying so).
pub trait TypedKind: Send + Sync + 'static {
    /// The record, as the typed API returns it.
    type Record: Serialize + Send;
    /// The typed create input (deserialised from a checked body).
    type New: DeserializeOwned + Send;
    /// The typed patch input (deserialised from a checked body).
    type Patch: DeserializeOwned + Send;

    /// The kind's description.
    fn describe(&self) -> KindDescription;

    /// The kind's description in a composition (see [`KindHandler::describe_in`]). The
    /// default is [`TypedKind::describe`].
    fn describe_in(&self, composed: &[RecordKind]) -> KindDescription {
        let _ = composed;
        self.describe()
    }

    /// A visible, live record.
    fn get(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
    ) -> impl Future<Output = Result<Self::Record>> + Send;

    /// A page of visible records.
    fn list(
        &self,
        store: &Store,
        ctx: &Ctx,
        q: &Query,
    ) -> impl Future<Output = Result<Page<Self::Record>>> + Send;

    /// The audit trail of a visible record.
    fn audit(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
    ) -> impl Future<Output = Result<Vec<AuditEntry>>> + Send;

    /// Creates a record.
    fn create(
        &self,
        store: &Store,
        ctx: &Ctx,
        input: Self::New,
    ) -> impl Future<Output = Result<Self::Record>> + Send {
        let _ = (store, ctx, input);
        let kind = self.describe().kind;
        async move { Err(unsupported(&kind, "create")) }
    }

    /// Changes a record.
    fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        patch: Self::Patch,
    ) -> impl Future<Output = Result<Self::Record>> + Send {
        let _ = (store, ctx, id, expected_version, patch);
        let kind = self.describe().kind;
        async move { Err(unsupported(&kind, "patch")) }
    }

    /// Soft-deletes a record.
    fn delete(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> impl Future<Output = Result<Self::Record>> + Send {
        let _ = (store, ctx, id, expected_version);
        let kind = self.describe().kind;
        async move { Err(unsupported(&kind, "delete")) }
    }

    /// Restores a soft-deleted record.
    fn restore(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> impl Future<Output = Result<Self::Record>> + Send {
        let _ = (store, ctx, id, expected_version);
        let kind = self.describe().kind;
        async move { Err(unsupported(&kind, "restore")) }
    }

    /// Rewrites a checked create body before it becomes `New` (where the input's shape
    /// differs from the record's, such as a contact's emails). The default keeps it.
    fn create_body(&self, body: JsonMap) -> JsonMap {
        body
    }

    /// Rewrites a checked patch body before it becomes `Patch`. The default keeps it.
    fn patch_body(&self, body: JsonMap) -> JsonMap {
        body
    }
}

/// A [`KindHandler`] over a [`TypedKind`].
pub fn typed<T: TypedKind>(kind: T) -> Arc<dyn KindHandler> {
    Arc::new(Typed(kind))
}

struct Typed<T>(T);

/// The record a typed call returns, serialised once into a [`Record`].
fn as_record<'a, R: Serialize>(
    call: impl Future<Output = Result<R>> + Send + 'a,
) -> BoxFuture<'a, Result<Record>> {
    Box::pin(async move { Record::from_typed(&call.await?) })
}

fn page_records<R: Serialize>(p: Page<R>) -> Result<Page<Record>> {
    Ok(Page {
        items: p
            .items
            .iter()
            .map(Record::from_typed)
            .collect::<Result<_>>()?,
        next_cursor: p.next_cursor,
        total: p.total,
    })
}

impl<T: TypedKind> KindHandler for Typed<T> {
    fn describe(&self) -> KindDescription {
        self.0.describe()
    }

    fn describe_in(&self, composed: &[RecordKind]) -> KindDescription {
        self.0.describe_in(composed)
    }

    fn get<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
    ) -> BoxFuture<'a, Result<Record>> {
        as_record(self.0.get(store, ctx, id))
    }

    fn list<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        q: &'a Query,
    ) -> BoxFuture<'a, Result<Page<Record>>> {
        Box::pin(async move { page_records(self.0.list(store, ctx, q).await?) })
    }

    fn create<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        body: JsonMap,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(async move {
            let input = from_body(self.0.create_body(body))?;
            Record::from_typed(&self.0.create(store, ctx, input).await?)
        })
    }

    fn patch<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
        body: JsonMap,
    ) -> BoxFuture<'a, Result<Record>> {
        Box::pin(async move {
            let patch = from_body(self.0.patch_body(body))?;
            Record::from_typed(
                &self
                    .0
                    .patch(store, ctx, id, expected_version, patch)
                    .await?,
            )
        })
    }

    fn delete<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<Record>> {
        as_record(self.0.delete(store, ctx, id, expected_version))
    }

    fn restore<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<Record>> {
        as_record(self.0.restore(store, ctx, id, expected_version))
    }

    fn audit<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
    ) -> BoxFuture<'a, Result<Vec<AuditEntry>>> {
        Box::pin(self.0.audit(store, ctx, id))
    }

    /// The typed get, without serialising a record nobody reads.
    fn visible<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        id: Uuid,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match self.0.get(store, ctx, id).await {
                Ok(_) => Ok(true),
                Err(Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
    }
}

/// The error of an operation a kind does not offer through the generic API.
pub fn unsupported(kind: &RecordKind, op: &str) -> Error {
    Error::PermissionDenied(format!(
        "the generic record API does not {op} {kind} records"
    ))
}

/// The record kinds of a composition of modules, with their handlers.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<RecordKind, Entry>,
}

#[derive(Clone)]
struct Entry {
    description: Arc<KindDescription>,
    handler: Arc<dyn KindHandler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// Builds the registry: kinds unique, every reference field pointing at a registered
    /// kind, relations filled in. Each kind is described with
    /// [`KindHandler::describe_in`] the composed kinds.
    pub fn build(handlers: Vec<Arc<dyn KindHandler>>) -> Result<Registry> {
        let composed: Vec<RecordKind> = handlers.iter().map(|h| h.describe().kind).collect();
        let mut descs: Vec<(KindDescription, Arc<dyn KindHandler>)> = vec![];
        for h in handlers {
            let own = h.describe().kind;
            let d = h.describe_in(&composed);
            if d.kind != own {
                return Err(Error::Config(format!(
                    "record kind {} describes itself in a composition under another name",
                    d.kind
                )));
            }
            if RecordKind::parse(d.kind.as_str()).is_err() {
                return Err(Error::Config(format!(
                    "{:?} is not a valid record kind name",
                    d.kind
                )));
            }
            if descs.iter().any(|(o, _)| o.kind == d.kind) {
                return Err(Error::Config(format!(
                    "record kind {} is declared twice",
                    d.kind
                )));
            }
            descs.push((d, h));
        }
        let mut relations: HashMap<RecordKind, Vec<Relation>> = HashMap::new();
        for (d, _) in &descs {
            for f in &d.fields {
                let mut targets = vec![];
                collect_references(&f.ty, &mut targets);
                for t in targets {
                    if !descs.iter().any(|(o, _)| &o.kind == t) {
                        return Err(Error::Config(format!(
                            "field {}.{} refers to record kind {t}, which no composed module declares",
                            d.kind, f.name
                        )));
                    }
                    relations.entry(t.clone()).or_default().push(Relation {
                        kind: d.kind.clone(),
                        field: f.name.clone(),
                    });
                }
            }
        }
        let mut kinds = BTreeMap::new();
        for (mut d, h) in descs {
            d.relations = relations.remove(&d.kind).unwrap_or_default();
            kinds.insert(
                d.kind.clone(),
                Entry {
                    description: Arc::new(d),
                    handler: h,
                },
            );
        }
        Ok(Registry { kinds })
    }

    /// Every kind's description (without tenant custom fields), by name.
    pub fn kinds(&self) -> impl Iterator<Item = &KindDescription> {
        self.kinds.values().map(|e| &*e.description)
    }

    /// A kind's description.
    pub fn get(&self, kind: &str) -> Option<&KindDescription> {
        self.kinds
            .iter()
            .find(|(k, _)| k.as_str() == kind)
            .map(|(_, e)| &*e.description)
    }

    fn entry(&self, kind: &str) -> Result<&Entry> {
        self.kinds
            .iter()
            .find(|(k, _)| k.as_str() == kind)
            .map(|(_, e)| e)
            .ok_or_else(|| Error::validation("kind", format!("{kind:?} is not a record kind")))
    }
}

fn collect_references<'a>(ty: &'a FieldType, out: &mut Vec<&'a RecordKind>) {
    match ty {
        FieldType::Reference(k) => out.push(k),
        FieldType::AnyReference(ks) => out.extend(ks.iter()),
        FieldType::List(of) => collect_references(of, out),
        _ => {}
    }
}

/// The generic record API: every kind by name, with JSON values (bodies in, [`Record`]s
/// out). From [`Store::records`].
#[derive(Clone)]
pub struct Records {
    store: Store,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("kinds", self.store.modules().registry())
            .finish()
    }
}

/// Names the kind on a Validation error that has none yet.
fn with_kind(kind: &RecordKind, e: Error) -> Error {
    match e {
        Error::Validation(mut v) => {
            if v.kind.is_none() {
                v.kind = Some(kind.clone());
            }
            Error::Validation(v)
        }
        other => other,
    }
}

impl Records {
    pub(crate) fn new(store: Store) -> Self {
        Records { store }
    }

    fn registry(&self) -> &Registry {
        self.store.modules().registry()
    }

    /// The composed kinds' descriptions (without tenant custom fields).
    pub fn kinds(&self) -> Vec<KindDescription> {
        self.registry().kinds().cloned().collect()
    }

    /// A kind's description with the tenant's custom field definitions.
    pub async fn describe(&self, ctx: &Ctx, kind: &str) -> Result<KindDescription> {
        let e = self.registry().entry(kind)?;
        let mut d = (*e.description).clone();
        if d.has_custom_fields {
            d.custom_fields = self
                .store
                .custom_fields()
                .of_kind(ctx, &d.kind)
                .await?
                .defs()
                .cloned()
                .collect();
        }
        Ok(d)
    }

    /// A visible, live record.
    pub async fn get(&self, ctx: &Ctx, kind: &str, id: Uuid) -> Result<Record> {
        let e = self.registry().entry(kind)?;
        e.handler.get(&self.store, ctx, id).await
    }

    /// A page of visible records (the query's filter names are the kind's
    /// [`KindDescription::query`] names).
    pub async fn list(&self, ctx: &Ctx, kind: &str, q: &Query) -> Result<Page<Record>> {
        let e = self.registry().entry(kind)?;
        e.handler
            .list(&self.store, ctx, q)
            .await
            .map_err(|err| with_kind(&e.description.kind, err))
    }

    /// Creates a record from a JSON object of field values.
    pub async fn create(&self, ctx: &Ctx, kind: &str, body: Json) -> Result<Record> {
        let e = self.registry().entry(kind)?;
        let d = &e.description;
        if !d.lifecycle.create {
            return Err(unsupported(&d.kind, "create"));
        }
        let body = check_body(d, body, true)?;
        e.handler
            .create(&self.store, ctx, body)
            .await
            .map_err(|err| with_kind(&d.kind, err))
    }

    /// Changes the fields a JSON object names on a record whose current version is
    /// `expected_version` (`null` clears a nullable field).
    pub async fn patch(
        &self,
        ctx: &Ctx,
        kind: &str,
        id: Uuid,
        expected_version: u64,
        body: Json,
    ) -> Result<Record> {
        let e = self.registry().entry(kind)?;
        let d = &e.description;
        if !d.lifecycle.patch {
            return Err(unsupported(&d.kind, "patch"));
        }
        let body = check_body(d, body, false)?;
        e.handler
            .patch(&self.store, ctx, id, expected_version, body)
            .await
            .map_err(|err| with_kind(&d.kind, err))
    }

    /// Soft-deletes a record.
    pub async fn delete(
        &self,
        ctx: &Ctx,
        kind: &str,
        id: Uuid,
        expected_version: u64,
    ) -> Result<Record> {
        let e = self.registry().entry(kind)?;
        e.handler
            .delete(&self.store, ctx, id, expected_version)
            .await
    }

    /// Restores a soft-deleted record.
    pub async fn restore(
        &self,
        ctx: &Ctx,
        kind: &str,
        id: Uuid,
        expected_version: u64,
    ) -> Result<Record> {
        let e = self.registry().entry(kind)?;
        e.handler
            .restore(&self.store, ctx, id, expected_version)
            .await
    }

    /// The audit trail of a visible record, oldest first.
    pub async fn audit(&self, ctx: &Ctx, kind: &str, id: Uuid) -> Result<Vec<AuditEntry>> {
        let e = self.registry().entry(kind)?;
        e.handler.audit(&self.store, ctx, id).await
    }

    /// Whether `record` exists in the actor's tenant, is not deleted, and is visible to
    /// the actor. The one rule for references and lookups: a kind no composed module
    /// declares is not visible.
    pub async fn visible(&self, ctx: &Ctx, record: &RecordRef) -> Result<bool> {
        match self.registry().entry(record.kind.as_str()) {
            Ok(e) => e.handler.visible(&self.store, ctx, record.id).await,
            Err(_) => Ok(false),
        }
    }

    /// Checks a reference held by field `field`: a record that does not exist, is deleted,
    /// belongs to another tenant or is hidden from the actor all give the same Validation
    /// error, `field: is not a <kind> of this tenant` (see [`reference_error`]).
    pub async fn check_reference(&self, ctx: &Ctx, field: &str, record: &RecordRef) -> Result<()> {
        if self.visible(ctx, record).await? {
            Ok(())
        } else {
            Err(reference_error(field, &record.kind))
        }
    }

    /// The subset of `records` the actor may see, in order (lookups by email or phone
    /// pass their hits through it).
    pub async fn retain_visible(
        &self,
        ctx: &Ctx,
        records: Vec<RecordRef>,
    ) -> Result<Vec<RecordRef>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            if self.visible(ctx, &r).await? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// The Validation error of a reference to a record that is not there for the actor
/// (missing, deleted, another tenant's, or hidden: one message for all).
pub fn reference_error(field: &str, kind: &RecordKind) -> Error {
    Error::validation(field, reference_reason(kind))
}

/// The reason text of [`reference_error`].
pub fn reference_reason(kind: &RecordKind) -> String {
    let k = kind.as_str().replace('_', " ");
    let article = if k.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("is not {article} {k} of this tenant")
}

/// Checks a body against a description: a JSON object whose keys are fields writable in
/// this operation, with values of their type. Every problem is reported at once.
pub fn check_body(d: &KindDescription, body: Json, create: bool) -> Result<JsonMap> {
    let mut errs = ValidationErrors::new();
    errs.kind = Some(d.kind.clone());
    let Json::Object(map) = body else {
        errs.push("_", "must be a JSON object of field values");
        return Err(errs.into());
    };
    for (k, v) in &map {
        let Some(f) = d.get(k) else {
            errs.push(k.clone(), format!("is not a field of {}", d.kind));
            continue;
        };
        match f.access {
            FieldAccess::ReadOnly => {
                errs.push(k.clone(), "is read-only");
                continue;
            }
            FieldAccess::Computed => {
                errs.push(k.clone(), "is computed and cannot be written");
                continue;
            }
            FieldAccess::CreateOnly if !create => {
                errs.push(k.clone(), "cannot be changed after create");
                continue;
            }
            _ => {}
        }
        if v.is_null() {
            if !f.nullable && f.ty != FieldType::Custom {
                errs.push(k.clone(), "may not be null");
            }
            continue;
        }
        if let Err(reason) = check_value(&f.ty, v) {
            errs.push(k.clone(), reason);
        }
    }
    if create {
        for f in &d.fields {
            if f.required && map.get(&f.name).is_none_or(Json::is_null) {
                errs.push(f.name.clone(), "is required");
            }
        }
    }
    errs.into_result()?;
    Ok(map)
}

fn check_value(ty: &FieldType, v: &Json) -> std::result::Result<(), String> {
    let wrong = || Err(format!("must be {}", ty.describe()));
    match ty {
        // The length is described for clients and enforced by the module's own
        // validation, so that both paths report it in the same words.
        FieldType::Text { .. } => match v.as_str() {
            Some(_) => Ok(()),
            None => wrong(),
        },
        FieldType::Int => {
            if v.as_i64().is_some() {
                Ok(())
            } else {
                wrong()
            }
        }
        FieldType::Decimal => match v {
            Json::String(s) if rust_decimal::Decimal::from_str_exact(s.trim()).is_ok() => Ok(()),
            Json::Number(_) => Ok(()),
            _ => wrong(),
        },
        FieldType::Money => match v {
            Json::Object(m) if m.contains_key("amount") && m.contains_key("currency") => Ok(()),
            _ => wrong(),
        },
        FieldType::Currency => match v.as_str() {
            Some(s) if crate::money::Currency::parse(s).is_ok() => Ok(()),
            _ => wrong(),
        },
        FieldType::Bool => {
            if v.is_boolean() {
                Ok(())
            } else {
                wrong()
            }
        }
        FieldType::Date => match v.as_str() {
            Some(s) if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => Ok(()),
            _ => wrong(),
        },
        FieldType::Timestamp => match v.as_str() {
            Some(s) if DateTime::parse_from_rfc3339(s).is_ok() => Ok(()),
            _ => wrong(),
        },
        FieldType::Id | FieldType::Reference(_) => match v.as_str() {
            Some(s) if Uuid::parse_str(s).is_ok() => Ok(()),
            _ => wrong(),
        },
        FieldType::AnyReference(kinds) => {
            let Some(m) = v.as_object() else {
                return wrong();
            };
            let (Some(kind), Some(id)) = (
                m.get("kind").and_then(Json::as_str),
                m.get("id").and_then(Json::as_str),
            ) else {
                return wrong();
            };
            if Uuid::parse_str(id).is_err() {
                return wrong();
            }
            if !kinds.is_empty() && !kinds.iter().any(|k| k.as_str() == kind) {
                return Err(format!("cannot refer to a record of kind {kind:?}"));
            }
            Ok(())
        }
        FieldType::Choice(choices) => match v.as_str() {
            Some(s) if choices.iter().any(|c| c == s) => Ok(()),
            _ => wrong(),
        },
        FieldType::List(of) => {
            let Some(items) = v.as_array() else {
                return wrong();
            };
            for (i, item) in items.iter().enumerate() {
                check_value(of, item).map_err(|r| format!("[{i}] {r}"))?;
            }
            Ok(())
        }
        FieldType::Object | FieldType::Custom => {
            if v.is_object() {
                Ok(())
            } else {
                wrong()
            }
        }
    }
}

/// Turns a checked body into a typed input `T` (an input struct deriving `Deserialize`
/// with `#[serde(default)]`). A field serde refuses is a Validation error naming it.
pub fn from_body<T: DeserializeOwned>(body: JsonMap) -> Result<T> {
    match serde_json::from_value::<T>(Json::Object(body.clone())) {
        Ok(t) => Ok(t),
        Err(whole) => {
            let mut errs = ValidationErrors::new();
            for (k, v) in body {
                let mut one = JsonMap::new();
                one.insert(k.clone(), v);
                if let Err(e) = serde_json::from_value::<T>(Json::Object(one)) {
                    errs.push(k, clean_serde(&e));
                }
            }
            if errs.is_empty() {
                errs.push("_", clean_serde(&whole));
            }
            Err(errs.into())
        }
    }
}

fn clean_serde(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The type of a field in words, as a kind's field table in its rustdoc writes it
/// (`text(100)`, `reference(organization)`, `list(object)`, ...).
pub fn type_name(ty: &FieldType) -> String {
    match ty {
        FieldType::Text { max_length } => format!("text({max_length})"),
        FieldType::Int => "int".into(),
        FieldType::Decimal => "decimal".into(),
        FieldType::Money => "money".into(),
        FieldType::Currency => "currency".into(),
        FieldType::Bool => "bool".into(),
        FieldType::Date => "date".into(),
        FieldType::Timestamp => "timestamp".into(),
        FieldType::Id => "id".into(),
        FieldType::Reference(k) => format!("reference({k})"),
        FieldType::AnyReference(ks) => format!(
            "any_reference({})",
            ks.iter()
                .map(RecordKind::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FieldType::Choice(c) => format!("choice({})", c.join(", ")),
        FieldType::List(of) => format!("list({})", type_name(of)),
        FieldType::Object => "object".into(),
        FieldType::Custom => "custom".into(),
    }
}

/// Checks that a kind's documentation (a Markdown table with one row per field, as
/// `` | `name` | `type` ... | ... ``) lists exactly the described fields with their types, so
/// that the rustdoc of a kind cannot drift from its description. Modules call it in a
/// unit test; the error lists what differs.
pub fn check_field_table(doc: &str, d: &KindDescription) -> std::result::Result<(), String> {
    let mut rows = vec![];
    for line in doc.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() >= 2
            && let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`'))
        {
            let ty = cells[1]
                .strip_prefix('`')
                .and_then(|c| c.split('`').next())
                .unwrap_or(cells[1]);
            rows.push((name.to_owned(), ty.to_owned()));
        }
    }
    let want: Vec<(String, String)> = d
        .fields
        .iter()
        .map(|f| (f.name.clone(), type_name(&f.ty)))
        .collect();
    if rows == want {
        Ok(())
    } else {
        Err(format!(
            "the field table of {} does not match its description; it should read:\n{}",
            d.kind,
            field_table(d)
        ))
    }
}

/// A kind's fields as a Markdown table (name, type, required, who writes it, personal
/// data, query name): what [`check_field_table`] expects in the kind's rustdoc.
pub fn field_table(d: &KindDescription) -> String {
    let mut out = String::from(
        "| field | type | required | written by | personal | filter |\n|---|---|---|---|---|---|\n",
    );
    for f in &d.fields {
        let access = match f.access {
            FieldAccess::ReadWrite => "create, patch",
            FieldAccess::CreateOnly => "create",
            FieldAccess::ReadOnly => "crmkit",
            FieldAccess::Computed => "computed",
        };
        out.push_str(&format!(
            "| `{}` | `{}`{} | {} | {} | {} | {} |\n",
            f.name,
            type_name(&f.ty),
            if f.nullable { " or null" } else { "" },
            if f.required { "yes" } else { "" },
            access,
            if f.personal { "yes" } else { "" },
            f.filter
                .as_deref()
                .map(|q| format!("`{q}`"))
                .unwrap_or_default()
        ));
    }
    out
}

/// Serialises a typed record to JSON.
pub fn to_record<T: Serialize>(v: &T) -> Json {
    crate::service::to_json(v)
}

/// Deserialises `Option<Option<T>>` patch fields so that an absent key is `None` (no
/// change) and `null` is `Some(None)` (clear): use with `#[serde(default, deserialize_with
/// = "crmkit_core::record::double_option")]`.
pub fn double_option<'de, T, D>(de: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Serialises a UTC timestamp as the text chrono's own `Serialize` writes (RFC 3339 with
/// `Z`, and 0, 3, 6 or 9 digits of fractional seconds, the fewest that are exact:
/// `2026-12-07T11:57:05.810948Z`), formatted on the stack instead of through chrono's
/// `Display`, which costs about as much as the rest of a record's JSON together. Use with
/// `#[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]` on the
/// timestamps of the records the generic API serialises; chrono's `Deserialize` reads the
/// text back unchanged. Years outside 0..=9999 go through chrono.
///
/// ```
/// use chrono::{TimeZone, Utc};
///
/// #[derive(serde::Serialize)]
/// struct R {
///     #[serde(serialize_with = "crmkit_core::record::serialize_timestamp")]
///     at: chrono::DateTime<Utc>,
/// }
///
/// let at = Utc.with_ymd_and_hms(2026, 12, 7, 11, 57, 5).unwrap();
/// let r = R { at: at + chrono::TimeDelta::microseconds(810_948) };
/// assert_eq!(serde_json::to_string(&r)?, r#"{"at":"2026-12-07T11:57:05.810948Z"}"#);
/// assert_eq!(serde_json::to_value(&r)?["at"], serde_json::to_value(r.at)?);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn serialize_timestamp<S: Serializer>(
    at: &DateTime<chrono::Utc>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let mut buf = [0u8; 32];
    match rfc3339(at, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => at.serialize(s),
    }
}

/// [`serialize_timestamp`] for an optional timestamp (`null` when there is none): use with
/// `#[serde(serialize_with = "crmkit_core::record::serialize_opt_timestamp")]`.
pub fn serialize_opt_timestamp<S: Serializer>(
    at: &Option<DateTime<chrono::Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    /// The timestamp inside the `Some`, written by [`serialize_timestamp`].
    struct Timestamp<'a>(&'a DateTime<chrono::Utc>);
    impl Serialize for Timestamp<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            serialize_timestamp(self.0, s)
        }
    }
    match at {
        Some(at) => s.serialize_some(&Timestamp(at)),
        None => s.serialize_none(),
    }
}

/// Writes `at` into `buf` as chrono's RFC 3339 `Display` of a `DateTime<Utc>` does
/// (`SecondsFormat::AutoSi`, `Z`; a leap second as second 60); `None` for a year outside
/// 0..=9999, which chrono writes with a sign.
fn rfc3339<'b>(at: &DateTime<chrono::Utc>, buf: &'b mut [u8; 32]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let t = at.naive_utc();
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut nano = t.nanosecond();
    let mut sec = t.second();
    if nano >= 1_000_000_000 {
        sec += 1;
        nano -= 1_000_000_000;
    }
    let year = year as u32;
    let two = |buf: &mut [u8; 32], at: usize, n: u32| {
        buf[at] = b'0' + (n / 10) as u8;
        buf[at + 1] = b'0' + (n % 10) as u8;
    };
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, t.month());
    buf[7] = b'-';
    two(buf, 8, t.day());
    buf[10] = b'T';
    two(buf, 11, t.hour());
    buf[13] = b':';
    two(buf, 14, t.minute());
    buf[16] = b':';
    two(buf, 17, sec);
    let mut len = 19;
    let (mut frac, digits) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (nano / 1_000_000, 3)
    } else if nano.is_multiple_of(1_000) {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    if digits > 0 {
        buf[len] = b'.';
        for i in (0..digits).rev() {
            buf[len + 1 + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    std::str::from_utf8(&buf[..len + 1]).ok()
}

/// The version a record's JSON carries (`version`), for callers chaining generic calls.
pub fn version_of(record: &Json) -> Option<u64> {
    record.get("version").and_then(Json::as_u64)
}

/// Writes the [`TypedKind`] methods that only forward to a module's typed API, inside an
/// `impl TypedKind for ...` block; methods that do more are written out beside it.
///
/// `api` builds the typed API from the store; `id` is the typed id built from the `Uuid`
/// of the request; then the list of methods that forward (`get`, `list`, `audit`,
/// `create`, `patch`, `delete`, `restore`, in any order, each at most once) to the API
/// method of the same name (`patch` to `update`): every module's typed API has these
/// names.
/// `never_deleted: kind` instead writes `delete` and `restore` for a kind whose records
/// are never deleted: a record the actor may see is refused as an operation the kind does
/// not offer (anything else is what `get` says, NotFound).
///
/// ```ignore
/// impl TypedKind for LeadKind {
///     // ... types, describe ...
///     crmkit_core::forward_typed_kind! {
///         api: |store| Leads::new(store)?, id: LeadId;
///         get, list, audit, create, patch, delete, restore,
///     }
/// }
/// ```
#[macro_export]
macro_rules! forward_typed_kind {
    (api: |$s:ident| $api:expr, id: $id:ty; $($m:ident),* $(,)?) => {
        $( $crate::forward_typed_kind!(@$m $s, $api, $id); )*
    };
    (never_deleted: $kind:expr) => {
        async fn delete(
            &self,
            store: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
            _: u64,
        ) -> $crate::Result<Self::Record> {
            self.get(store, ctx, id).await?;
            Err($crate::record::unsupported(&$kind, "delete"))
        }

        async fn restore(
            &self,
            store: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
            _: u64,
        ) -> $crate::Result<Self::Record> {
            self.get(store, ctx, id).await?;
            Err($crate::record::unsupported(&$kind, "restore"))
        }
    };
    (@get $s:ident, $api:expr, $id:ty) => {
        async fn get(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
        ) -> $crate::Result<Self::Record> {
            $api.get(ctx, <$id>::from_uuid(id)).await
        }
    };
    (@list $s:ident, $api:expr, $id:ty) => {
        async fn list(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            q: &$crate::Query,
        ) -> $crate::Result<$crate::Page<Self::Record>> {
            $api.list(ctx, q).await
        }
    };
    (@audit $s:ident, $api:expr, $id:ty) => {
        async fn audit(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
        ) -> $crate::Result<Vec<$crate::AuditEntry>> {
            $api.audit(ctx, <$id>::from_uuid(id)).await
        }
    };
    (@create $s:ident, $api:expr, $id:ty) => {
        async fn create(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            input: Self::New,
        ) -> $crate::Result<Self::Record> {
            $api.create(ctx, input).await
        }
    };
    (@patch $s:ident, $api:expr, $id:ty) => {
        async fn patch(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
            expected_version: u64,
            patch: Self::Patch,
        ) -> $crate::Result<Self::Record> {
            $api.update(ctx, <$id>::from_uuid(id), expected_version, patch).await
        }
    };
    (@delete $s:ident, $api:expr, $id:ty) => {
        async fn delete(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
            expected_version: u64,
        ) -> $crate::Result<Self::Record> {
            $api.delete(ctx, <$id>::from_uuid(id), expected_version).await
        }
    };
    (@restore $s:ident, $api:expr, $id:ty) => {
        async fn restore(
            &self,
            $s: &$crate::Store,
            ctx: &$crate::Ctx,
            id: ::uuid::Uuid,
            expected_version: u64,
        ) -> $crate::Result<Self::Record> {
            $api.restore(ctx, <$id>::from_uuid(id), expected_version).await
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind() -> KindDescription {
        KindDescription::new("thing", "Thing", "Things", "m")
            .id_field()
            .field(FieldDescription::new("name", FieldType::text(5)).required())
            .field(FieldDescription::new("t", FieldType::text(5)))
            .field(FieldDescription::new("n", FieldType::Int).nullable())
            .field(FieldDescription::new("c", FieldType::choice(&["a", "b"])).create_only())
            .field(FieldDescription::new("w", FieldType::Int).computed())
            .system_fields()
    }

    #[test]
    fn bodies_are_checked_against_the_description() {
        let d = kind();
        assert!(
            check_body(
                &d,
                serde_json::json!({"name": "abc", "n": null, "c": "a"}),
                true
            )
            .is_ok()
        );
        let e = check_body(
            &d,
            serde_json::json!({"name": "x", "t": 5, "n": "x", "c": "z", "w": 1, "id": "x", "zz": 1}),
            true,
        )
        .unwrap_err();
        let v = e.validation_errors().unwrap();
        assert_eq!(v.kind, Some(RecordKind::new("thing")));
        for f in ["t", "n", "c", "w", "id", "zz"] {
            assert!(v.has(f), "{f} not reported: {v}");
        }
        let e = check_body(&d, serde_json::json!({}), true).unwrap_err();
        assert!(e.validation_errors().unwrap().has("name"));
        let e = check_body(&d, serde_json::json!({"c": "a"}), false).unwrap_err();
        assert!(e.validation_errors().unwrap().has("c"));
        let e = check_body(&d, serde_json::json!([1]), false).unwrap_err();
        assert!(e.validation_errors().unwrap().has("_"));
    }

    #[test]
    fn unsupported_reads_well() {
        assert_eq!(
            unsupported(&RecordKind::USER, "patch").to_string(),
            "permission denied: the generic record API does not patch user records"
        );
    }

    #[test]
    fn reference_reasons_read_well() {
        assert_eq!(
            reference_reason(&RecordKind::ORGANIZATION),
            "is not an organization of this tenant"
        );
        assert_eq!(
            reference_reason(&RecordKind::new("custom_field")),
            "is not a custom field of this tenant"
        );
    }

    /// A kind whose reference field names only the composed ones of its targets.
    struct Narrowing;

    impl KindHandler for Narrowing {
        fn describe(&self) -> KindDescription {
            self.describe_in(&[])
        }
        fn describe_in(&self, composed: &[RecordKind]) -> KindDescription {
            let targets = ["narrowing", "optional"]
                .into_iter()
                .map(RecordKind::new)
                .filter(|k| composed.contains(k))
                .collect();
            KindDescription::new("narrowing", "N", "Ns", "m").field(FieldDescription::new(
                "to",
                FieldType::AnyReference(targets),
            ))
        }
        fn get<'a>(&'a self, _: &'a Store, _: &'a Ctx, _: Uuid) -> BoxFuture<'a, Result<Record>> {
            Box::pin(async { Ok(Record::from(Json::Null)) })
        }
        fn list<'a>(
            &'a self,
            _: &'a Store,
            _: &'a Ctx,
            _: &'a Query,
        ) -> BoxFuture<'a, Result<Page<Record>>> {
            Box::pin(async { Err(Error::storage("unused")) })
        }
        fn audit<'a>(
            &'a self,
            _: &'a Store,
            _: &'a Ctx,
            _: Uuid,
        ) -> BoxFuture<'a, Result<Vec<AuditEntry>>> {
            Box::pin(async { Ok(vec![]) })
        }
    }

    #[test]
    fn kinds_are_described_in_their_composition() {
        let r = Registry::build(vec![Arc::new(Narrowing)]).unwrap();
        assert_eq!(
            r.get("narrowing").unwrap().fields[0].ty,
            FieldType::AnyReference(vec![RecordKind::new("narrowing")])
        );
        // Describing every target statically is refused when one is not composed.
        struct Static;
        impl KindHandler for Static {
            fn describe(&self) -> KindDescription {
                Narrowing.describe_in(&[RecordKind::new("narrowing"), RecordKind::new("optional")])
            }
            fn get<'a>(
                &'a self,
                s: &'a Store,
                c: &'a Ctx,
                id: Uuid,
            ) -> BoxFuture<'a, Result<Record>> {
                Narrowing.get(s, c, id)
            }
            fn list<'a>(
                &'a self,
                s: &'a Store,
                c: &'a Ctx,
                q: &'a Query,
            ) -> BoxFuture<'a, Result<Page<Record>>> {
                Narrowing.list(s, c, q)
            }
            fn audit<'a>(
                &'a self,
                s: &'a Store,
                c: &'a Ctx,
                id: Uuid,
            ) -> BoxFuture<'a, Result<Vec<AuditEntry>>> {
                Narrowing.audit(s, c, id)
            }
        }
        assert!(matches!(
            Registry::build(vec![Arc::new(Static)]),
            Err(Error::Config(m)) if m.contains("optional")
        ));
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct In {
        a: String,
        #[serde(deserialize_with = "double_option")]
        b: Option<Option<i64>>,
    }

    #[test]
    fn bodies_become_typed_inputs_naming_bad_fields() {
        let m = |v: Json| v.as_object().unwrap().clone();
        assert_eq!(
            from_body::<In>(m(serde_json::json!({"b": null})))
                .unwrap()
                .b,
            Some(None)
        );
        assert_eq!(from_body::<In>(m(serde_json::json!({}))).unwrap().b, None);
        let e = from_body::<In>(m(serde_json::json!({"a": "x", "b": "y"}))).unwrap_err();
        let v = e.validation_errors().unwrap();
        assert!(v.has("b") && !v.has("a"), "{v}");
    }

    /// The fast timestamp text is chrono's, byte for byte, and reads back as the same
    /// instant: every fraction length, leap seconds, the year bounds and beyond them.
    #[test]
    fn timestamps_serialise_as_chrono_does() {
        use chrono::{NaiveDate, NaiveTime, TimeDelta, Utc};

        #[derive(Serialize)]
        struct R {
            #[serde(serialize_with = "serialize_timestamp")]
            at: DateTime<Utc>,
            #[serde(serialize_with = "serialize_opt_timestamp")]
            opt: Option<DateTime<Utc>>,
        }
        #[derive(Serialize)]
        struct C {
            at: DateTime<Utc>,
            opt: Option<DateTime<Utc>>,
        }
        let check = |at: DateTime<Utc>| {
            for opt in [None, Some(at)] {
                let fast = serde_json::to_string(&R { at, opt }).unwrap();
                assert_eq!(
                    fast,
                    serde_json::to_string(&C { at, opt }).unwrap(),
                    "{at:?}"
                );
                let back: DateTime<Utc> = serde_json::from_value(
                    serde_json::from_str::<Json>(&fast).unwrap()["at"].clone(),
                )
                .unwrap();
                assert_eq!(back, at);
            }
        };
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let mut t = day(1970, 1, 1).and_hms_opt(0, 0, 0).unwrap().and_utc();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x >> 8) % 1000 * 1_000_000,
                2 => (x >> 8) % 1_000_000 * 1000,
                _ => (x >> 8) % 1_000_000_000,
            };
            t = day(1970, 1, 1).and_hms_opt(0, 0, 0).unwrap().and_utc()
                + TimeDelta::seconds(((x >> 20) % 4_000_000_000) as i64)
                + TimeDelta::nanoseconds(nanos as i64);
            check(t);
        }
        check(t + TimeDelta::days(365 * 3000));
        for (y, m, d) in [
            (0, 1, 1),
            (9999, 12, 31),
            (-1, 12, 31),
            (10_000, 1, 1),
            (2000, 2, 29),
        ] {
            for nano in [0, 1, 10, 1_000, 120_000, 7_000_000, 999_999_999] {
                check(
                    day(y, m, d)
                        .and_hms_nano_opt(23, 59, 59, nano)
                        .unwrap()
                        .and_utc(),
                );
                check(
                    day(y, m, d)
                        .and_hms_nano_opt(0, 0, 0, nano)
                        .unwrap()
                        .and_utc(),
                );
            }
        }
        for nano in [1_000_000_000, 1_500_000_000, 1_000_000_001, 1_999_999_000] {
            let leap = NaiveTime::from_hms_nano_opt(23, 59, 59, nano).unwrap();
            check(day(2016, 12, 31).and_time(leap).and_utc());
        }
    }
}
