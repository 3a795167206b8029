//! The in-memory backend: the reference model of the storage contract and a real backend
//! for tests, demos and small apps.
//!
//! Rows live in ordered maps keyed by `(tenant, primary key)`, with unique indexes kept as
//! hash maps. A commit takes the lock once, applies the changeset and keeps an undo log;
//! if any write fails, the undo log restores every row and index it touched, so a failed
//! command leaves no trace.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::event::{EVENT_SEQUENCE, SEQUENCES_TABLE};
use crate::id::{RecordKind, TenantId};
use crate::store::{
    Aggregate, Backend, BackendKind, BoxFuture, Changeset, CmpOp, ColumnType, Commit, Cond,
    CustomRef, Fault, Measure, Row, Schema, Select, TableDef, Value, Write,
};

type Key = (TenantId, Vec<Value>);

struct UniqueIndex {
    name: &'static str,
    columns: Vec<usize>,
    entries: HashMap<Key, Vec<Value>>,
}

/// A condition planned over one table: columns resolved to positions (see
/// the state's `plan`). `Custom` reads the custom values table.
enum Plan<'c> {
    Const(Option<bool>),
    Cmp(usize, CmpOp, &'c Value),
    In(usize, &'c [Value]),
    IsNull(usize),
    Contains(usize, &'c str),
    StartsWith(usize, &'c str),
    /// All of them (`false`: AND) or any (`true`: OR), three-valued.
    All(Vec<Plan<'c>>, bool),
    Not(Box<Plan<'c>>),
    Custom(&'c CustomRef, Option<&'c Cond>),
}

struct MemTable {
    def: TableDef,
    /// Column positions by name (conditions name columns; a scan looks each one up per
    /// row, so not by a linear search of the definition).
    positions: HashMap<&'static str, usize>,
    key_pos: Vec<usize>,
    version_pos: Option<usize>,
    rows: BTreeMap<Key, Row>,
    uniques: Vec<UniqueIndex>,
}

impl MemTable {
    fn new(def: &TableDef) -> Self {
        MemTable {
            positions: def
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name, i))
                .collect(),
            key_pos: def.key_positions(),
            version_pos: def.position("version"),
            uniques: def
                .indexes
                .iter()
                .filter(|i| i.unique)
                .map(|i| UniqueIndex {
                    name: i.name,
                    columns: i
                        .columns
                        .iter()
                        .map(|c| def.position(c).expect("validated schema"))
                        .collect(),
                    entries: HashMap::new(),
                })
                .collect(),
            rows: BTreeMap::new(),
            def: def.clone(),
        }
    }

    /// The position of column `name`.
    fn pos(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    fn key_of(&self, row: &Row) -> Vec<Value> {
        self.key_pos.iter().map(|&p| row[p].clone()).collect()
    }

    fn unique_key(tenant: TenantId, ix: &UniqueIndex, row: &Row) -> Option<Key> {
        let vals: Vec<Value> = ix.columns.iter().map(|&p| row[p].clone()).collect();
        if vals.iter().any(Value::is_null) {
            None
        } else {
            Some((tenant, vals))
        }
    }

    fn duplicate(&self, field: &str) -> Error {
        Error::Duplicate {
            kind: RecordKind::parse(self.def.name).unwrap_or(RecordKind::new("row")),
            field: field.to_owned(),
            existing: None,
        }
    }

    /// Inserts a row that is known not to exist, checking unique indexes.
    fn insert(&mut self, tenant: TenantId, row: Row) -> Result<()> {
        let key = (tenant, self.key_of(&row));
        if self.rows.contains_key(&key) {
            return Err(self.duplicate("id"));
        }
        for ix in &self.uniques {
            if let Some(k) = Self::unique_key(tenant, ix, &row)
                && ix.entries.contains_key(&k)
            {
                return Err(self.duplicate(ix.name));
            }
        }
        for ix in &mut self.uniques {
            if let Some(k) = Self::unique_key(tenant, ix, &row) {
                ix.entries.insert(k, key.1.clone());
            }
        }
        self.rows.insert(key, row);
        Ok(())
    }

    fn remove(&mut self, key: &Key) -> Option<Row> {
        let row = self.rows.remove(key)?;
        for ix in &mut self.uniques {
            if let Some(k) = Self::unique_key(key.0, ix, &row) {
                ix.entries.remove(&k);
            }
        }
        Some(row)
    }

    /// Inserts `new` in place of `old` (which the caller removed), putting `old` back when
    /// the insert fails (a unique clash); the undo of the swap goes to `undo`. `new` may
    /// have another key than `old`: the undo removes the row where it is now.
    fn replace(
        &mut self,
        table: &'static str,
        tenant: TenantId,
        old: Row,
        new: Row,
        undo: &mut Vec<Undo>,
    ) -> Result<()> {
        let new_key = (tenant, self.key_of(&new));
        if let Err(e) = self.insert(tenant, new) {
            self.insert(tenant, old)
                .expect("restoring the row that was there");
            return Err(e);
        }
        undo.push(Undo::Removed(table, old, tenant));
        undo.push(Undo::Inserted(table, new_key));
        Ok(())
    }

    fn tenant_rows(&self, tenant: TenantId) -> impl Iterator<Item = &Row> {
        self.rows
            .range((Bound::Included((tenant, Vec::new())), Bound::Unbounded))
            .take_while(move |((t, _), _)| *t == tenant)
            .map(|(_, r)| r)
    }

    /// The rows of `tenant` that may match `cond`, in key order: a range scan per key
    /// prefix when the condition fixes leading primary-key columns (`=` or `IN` at the top
    /// level), otherwise every row of the tenant. Callers still evaluate `cond` on each.
    fn candidates(&self, tenant: TenantId, cond: &Cond) -> Vec<&Row> {
        let Some(prefixes) = self.key_prefixes(cond) else {
            return self.tenant_rows(tenant).collect();
        };
        let mut out = vec![];
        for p in prefixes {
            let n = p.len();
            let start = (tenant, p);
            for ((t, k), r) in self
                .rows
                .range((Bound::Included(start.clone()), Bound::Unbounded))
            {
                if *t != tenant || k.len() < n || k[..n] != start.1[..] {
                    break;
                }
                out.push(r);
            }
        }
        out
    }

    /// Distinct, sorted key prefixes fixed by a condition, if any.
    fn key_prefixes(&self, cond: &Cond) -> Option<Vec<Vec<Value>>> {
        let leaves: Vec<&Cond> = match cond {
            Cond::And(v) => v.iter().collect(),
            c => vec![c],
        };
        let mut prefixes: Vec<Vec<Value>> = vec![vec![]];
        for (i, col) in self.def.primary_key.iter().enumerate() {
            let ty = self.def.columns[self.key_pos[i]].ty;
            // Only values of the column's own stored variant: a mixed-variant comparison
            // is left to the full scan, where `eval` decides it.
            let same_variant = |v: &Value| match v {
                Value::Uuid(_) => ty == ColumnType::Uuid,
                Value::Int(_) => matches!(
                    ty,
                    ColumnType::Int
                        | ColumnType::Bool
                        | ColumnType::Timestamp
                        | ColumnType::Decimal
                ),
                Value::Text(_) => matches!(
                    ty,
                    ColumnType::Text(_) | ColumnType::LongText | ColumnType::Date
                ),
                Value::Null => false,
            };
            let vals: Option<Vec<Value>> = leaves.iter().find_map(|l| match l {
                Cond::Cmp(c, CmpOp::Eq, v) if c == col => Some(vec![v.clone()]),
                Cond::In(c, vs) if c == col => Some(vs.clone()),
                _ => None,
            });
            let Some(mut vals) = vals else { break };
            if vals.is_empty() {
                return Some(vec![]);
            }
            if !vals.iter().all(same_variant) || prefixes.len() * vals.len() > 10_000 {
                break;
            }
            vals.sort();
            vals.dedup();
            prefixes = prefixes
                .into_iter()
                .flat_map(|p| {
                    vals.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push(v.clone());
                        q
                    })
                })
                .collect();
        }
        if prefixes.first().is_none_or(|p| p.is_empty()) {
            None
        } else {
            Some(prefixes)
        }
    }
}

enum Undo {
    Inserted(&'static str, Key),
    Removed(&'static str, Row, TenantId),
}

#[derive(Default)]
struct State {
    tables: HashMap<&'static str, MemTable>,
}

impl State {
    fn table(&self, name: &str) -> Result<&MemTable> {
        self.tables
            .get(name)
            .ok_or_else(|| Error::Config(format!("unknown table {name}")))
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut MemTable> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| Error::Config(format!("unknown table {name}")))
    }

    /// Checks every column a condition names, so that an unknown column is a Config error
    /// whatever the data (not only once a row reaches it).
    fn check_cond(&self, t: &MemTable, cond: &Cond) -> Result<()> {
        let known = |name: &str| -> Result<()> {
            t.def
                .position(name)
                .map(|_| ())
                .ok_or_else(|| Error::Config(format!("unknown column {}.{name}", t.def.name)))
        };
        match cond {
            Cond::True | Cond::False => Ok(()),
            Cond::Cmp(c, _, _)
            | Cond::In(c, _)
            | Cond::IsNull(c)
            | Cond::Contains(c, _)
            | Cond::StartsWith(c, _) => known(c),
            Cond::And(cs) | Cond::Or(cs) => cs.iter().try_for_each(|c| self.check_cond(t, c)),
            Cond::Not(c) => self.check_cond(t, c),
            Cond::Custom { cond, .. } => {
                known("id")?;
                match cond {
                    Some(c) => self.check_cond(self.table(crate::custom::VALUES_TABLE)?, c),
                    None => Ok(()),
                }
            }
        }
    }

    /// `cond` over `t` with its columns resolved to positions (an unknown column is a
    /// Config error, as in [`Self::eval`]).
    fn plan<'c>(&self, t: &MemTable, cond: &'c Cond) -> Result<Plan<'c>> {
        let pos = |name: &str| {
            t.pos(name)
                .ok_or_else(|| Error::Config(format!("unknown column {}.{name}", t.def.name)))
        };
        Ok(match cond {
            Cond::True => Plan::Const(Some(true)),
            Cond::False => Plan::Const(Some(false)),
            Cond::Cmp(c, op, v) => Plan::Cmp(pos(c)?, *op, v),
            Cond::In(c, vs) => Plan::In(pos(c)?, vs),
            Cond::IsNull(c) => Plan::IsNull(pos(c)?),
            Cond::Contains(c, needle) => Plan::Contains(pos(c)?, needle),
            Cond::StartsWith(c, prefix) => Plan::StartsWith(pos(c)?, prefix),
            Cond::And(cs) => Plan::All(
                cs.iter().map(|c| self.plan(t, c)).collect::<Result<_>>()?,
                false,
            ),
            Cond::Or(cs) => Plan::All(
                cs.iter().map(|c| self.plan(t, c)).collect::<Result<_>>()?,
                true,
            ),
            Cond::Not(c) => Plan::Not(Box::new(self.plan(t, c)?)),
            Cond::Custom { field, cond } => Plan::Custom(field, cond.as_deref()),
        })
    }

    /// [`Self::eval`] of a planned condition: the same three-valued result.
    fn eval_plan(
        &self,
        tenant: TenantId,
        t: &MemTable,
        plan: &Plan<'_>,
        row: &Row,
    ) -> Result<Option<bool>> {
        Ok(match plan {
            Plan::Const(v) => *v,
            Plan::Cmp(p, op, v) => {
                let a = &row[*p];
                if a.is_null() || v.is_null() {
                    None
                } else {
                    Some(op.holds(a.cmp(v)))
                }
            }
            Plan::In(p, vs) => {
                let a = &row[*p];
                if vs.is_empty() {
                    Some(false)
                } else if a.is_null() {
                    None
                } else if vs.iter().any(|v| !v.is_null() && v.cmp(a).is_eq()) {
                    Some(true)
                } else if vs.iter().any(Value::is_null) {
                    None
                } else {
                    Some(false)
                }
            }
            Plan::IsNull(p) => Some(row[*p].is_null()),
            Plan::Contains(p, needle) => match &row[*p] {
                Value::Null => None,
                Value::Text(s) => Some(s.contains(needle)),
                other => Some(format_value(other).contains(needle)),
            },
            Plan::StartsWith(p, prefix) => match &row[*p] {
                Value::Null => None,
                Value::Text(s) => Some(s.starts_with(prefix)),
                other => Some(format_value(other).starts_with(prefix)),
            },
            Plan::All(parts, decisive) => {
                let mut acc = Some(!decisive);
                for c in parts {
                    match self.eval_plan(tenant, t, c, row)? {
                        Some(v) if v == *decisive => return Ok(Some(*decisive)),
                        None => acc = None,
                        Some(_) => {}
                    }
                }
                acc
            }
            Plan::Not(c) => self.eval_plan(tenant, t, c, row)?.map(|b| !b),
            Plan::Custom(field, c) => self.eval_custom(tenant, t, field, *c, row)?,
        })
    }

    /// The keys of the rows of `t` in `tenant` that match `cond`.
    fn matching_keys(&self, tenant: TenantId, t: &MemTable, cond: &Cond) -> Result<Vec<Key>> {
        let mut hit = vec![];
        let plan = self.plan(t, cond)?;
        for row in t.candidates(tenant, cond) {
            if self.eval_plan(tenant, t, &plan, row)? == Some(true) {
                hit.push((tenant, t.key_of(row)));
            }
        }
        Ok(hit)
    }

    /// Whether `cond` holds for `row` of `t` (three-valued: `None` is SQL's unknown).
    fn eval(&self, tenant: TenantId, t: &MemTable, cond: &Cond, row: &Row) -> Result<Option<bool>> {
        self.eval_plan(tenant, t, &self.plan(t, cond)?, row)
    }

    /// A custom-field condition on `row`: whether the record has a value of the field
    /// (matching `cond` when given) in the custom values table.
    fn eval_custom(
        &self,
        tenant: TenantId,
        t: &MemTable,
        field: &CustomRef,
        cond: Option<&Cond>,
        row: &Row,
    ) -> Result<Option<bool>> {
        let id = t
            .pos("id")
            .map(|p| row[p].clone())
            .ok_or_else(|| Error::Config(format!("unknown column {}.id", t.def.name)))?;
        let cv = self.table(crate::custom::VALUES_TABLE)?;
        let prefix = vec![
            Value::Text(field.record_kind.clone()),
            Value::Text(field.key.clone()),
            id,
        ];
        let mut found = false;
        for ((tt, k), r) in cv
            .rows
            .range((Bound::Included((tenant, prefix.clone())), Bound::Unbounded))
        {
            if *tt != tenant || k.len() < 3 || k[..3] != prefix[..] {
                break;
            }
            let ok = match cond {
                None => true,
                Some(c) => self.eval(tenant, cv, c, r)? == Some(true),
            };
            if ok {
                found = true;
                break;
            }
        }
        Ok(Some(found))
    }

    fn apply(&mut self, tenant: TenantId, w: Write, undo: &mut Vec<Undo>) -> Result<()> {
        match w {
            Write::Insert { table, row } => {
                let t = self.table_mut(table)?;
                if row.len() != t.def.columns.len() {
                    return Err(Error::storage(format!(
                        "row for {table} has {} values, expected {}",
                        row.len(),
                        t.def.columns.len()
                    )));
                }
                let key = (tenant, t.key_of(&row));
                t.insert(tenant, row)?;
                undo.push(Undo::Inserted(table, key));
            }
            Write::Update {
                table,
                key,
                set,
                expect_version,
                record,
            } => {
                let t = self.table_mut(table)?;
                let k = (tenant, key);
                let Some(old) = t.rows.get(&k) else {
                    return Err(Error::not_found(record.kind.clone(), record.id));
                };
                let mut new = old.clone();
                if let Some(expected) = expect_version {
                    let vp = t
                        .version_pos
                        .ok_or_else(|| Error::Config(format!("{table} has no version column")))?;
                    let actual = old[vp].as_int().unwrap_or(0) as u64;
                    if actual != expected {
                        return Err(Error::Conflict {
                            record,
                            expected,
                            actual,
                        });
                    }
                    new[vp] = Value::Int(expected as i64 + 1);
                }
                for (c, v) in set {
                    let p = t
                        .def
                        .position(c)
                        .ok_or_else(|| Error::Config(format!("unknown column {table}.{c}")))?;
                    new[p] = v;
                }
                let old = t.remove(&k).expect("present");
                t.replace(table, tenant, old, new, undo)?;
            }
            Write::Delete { table, key } => {
                let t = self.table_mut(table)?;
                if let Some(old) = t.remove(&(tenant, key)) {
                    undo.push(Undo::Removed(table, old, tenant));
                }
            }
            Write::UpdateWhere { table, cond, set } => {
                let t = self.table(table)?;
                self.check_cond(t, &cond)?;
                let mut positions = Vec::with_capacity(set.len());
                for (c, v) in set {
                    let p = t
                        .def
                        .position(c)
                        .ok_or_else(|| Error::Config(format!("unknown column {table}.{c}")))?;
                    if t.def.primary_key.contains(&c) {
                        return Err(Error::Config(format!(
                            "UpdateWhere cannot set key column {table}.{c}"
                        )));
                    }
                    positions.push((p, v));
                }
                let hit = self.matching_keys(tenant, t, &cond)?;
                let t = self.table_mut(table)?;
                for k in hit {
                    let Some(old) = t.remove(&k) else { continue };
                    let mut new = old.clone();
                    for (p, v) in &positions {
                        new[*p] = v.clone();
                    }
                    t.replace(table, tenant, old, new, undo)?;
                }
            }
            Write::DeleteWhere { table, cond } => {
                let t = self.table(table)?;
                self.check_cond(t, &cond)?;
                let doomed = self.matching_keys(tenant, t, &cond)?;
                let t = self.table_mut(table)?;
                for k in doomed {
                    if let Some(old) = t.remove(&k) {
                        undo.push(Undo::Removed(table, old, tenant));
                    }
                }
            }
        }
        Ok(())
    }

    fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Inserted(table, key) => {
                    if let Some(t) = self.tables.get_mut(table) {
                        t.remove(&key);
                    }
                }
                Undo::Removed(table, row, tenant) => {
                    if let Some(t) = self.tables.get_mut(table) {
                        let _ = t.insert(tenant, row);
                    }
                }
            }
        }
    }

    fn alloc_seq(
        &mut self,
        tenant: TenantId,
        name: &str,
        n: u64,
        undo: &mut Vec<Undo>,
    ) -> Result<u64> {
        let t = self.table_mut(SEQUENCES_TABLE)?;
        let key = (tenant, vec![Value::Text(name.to_owned())]);
        let last = match t.remove(&key) {
            Some(old) => {
                let last = old[1].as_int().unwrap_or(0) as u64;
                undo.push(Undo::Removed(SEQUENCES_TABLE, old, tenant));
                last
            }
            None => 0,
        };
        t.insert(
            tenant,
            vec![Value::Text(name.to_owned()), Value::Int((last + n) as i64)],
        )?;
        undo.push(Undo::Inserted(SEQUENCES_TABLE, key));
        Ok(last + 1)
    }

    fn sorted(&self, tenant: TenantId, s: &Select) -> Result<Vec<(Vec<Value>, Row)>> {
        let t = self.table(s.table)?;
        let cv = self.table(crate::custom::VALUES_TABLE)?;
        let id_pos = t.pos("id");
        let mut positions = vec![];
        for o in &s.order {
            let p = match &o.custom {
                None => t.pos(&o.column),
                Some(_) => cv.pos(&o.column).and(id_pos),
            };
            positions
                .push(p.ok_or_else(|| Error::Config(format!("unknown sort column {}", o.column)))?);
        }
        self.check_cond(t, &s.cond)?;
        let mut out = vec![];
        let plan = self.plan(t, &s.cond)?;
        for row in t.candidates(tenant, &s.cond) {
            if self.eval_plan(tenant, t, &plan, row)? == Some(true) {
                let mut sk = Vec::with_capacity(s.order.len());
                for (o, &p) in s.order.iter().zip(&positions) {
                    let v = match &o.custom {
                        None => row[p].clone(),
                        Some(f) => {
                            let key = vec![
                                Value::Text(f.record_kind.clone()),
                                Value::Text(f.key.clone()),
                                row[p].clone(),
                                Value::Int(0),
                            ];
                            let vp = cv.pos(&o.column).expect("checked above");
                            cv.rows
                                .get(&(tenant, key))
                                .map(|r| r[vp].clone())
                                .unwrap_or(Value::Null)
                        }
                    };
                    sk.push(match (v, &o.null_as) {
                        (Value::Null, Some(sub)) => sub.clone(),
                        (v, _) => v,
                    });
                }
                out.push((sk, row.clone()));
            }
        }
        let cmp = |a: &[Value], b: &[Value]| {
            for ((x, y), o) in a.iter().zip(b).zip(&s.order) {
                let c = x.cmp(y);
                let c = if o.desc { c.reverse() } else { c };
                if c.is_ne() {
                    return c;
                }
            }
            std::cmp::Ordering::Equal
        };
        out.sort_by(|a, b| cmp(&a.0, &b.0));
        if let Some(after) = &s.after {
            out.retain(|(sk, _)| cmp(sk, after).is_gt());
        }
        if let Some(l) = s.limit {
            out.truncate(l as usize);
        }
        let omitted: Vec<usize> = s.omit.iter().filter_map(|c| t.pos(c)).collect();
        if !omitted.is_empty() {
            for (_, row) in &mut out {
                for &p in &omitted {
                    row[p] = Value::Null;
                }
            }
        }
        Ok(out)
    }
}

fn format_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Text(s) => s.clone(),
        Value::Uuid(u) => u.hyphenated().to_string(),
    }
}

/// The in-memory backend.
pub struct MemoryBackend {
    schema: Schema,
    state: Mutex<State>,
    fault: Mutex<Option<Fault>>,
}

impl MemoryBackend {
    /// An empty backend for a schema.
    pub fn new(schema: Schema) -> Self {
        let mut state = State::default();
        for t in schema.tables() {
            state.tables.insert(t.name, MemTable::new(t));
        }
        MemoryBackend {
            schema,
            state: Mutex::new(state),
            fault: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit_now(&self, mut cs: Changeset) -> Result<Commit> {
        crate::store::check_changeset(&self.schema, &cs)?;
        let fault = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let mut state = self.lock();
        let mut undo = Vec::new();
        let mut n = 0usize;
        let step = |n: &mut usize| -> Result<()> {
            let here = *n;
            *n += 1;
            match fault {
                Some(Fault::FailAtWrite(at)) if at == here => {
                    Err(Error::storage(format!("injected fault at write {here}")))
                }
                _ => Ok(()),
            }
        };
        let tenant = cs.tenant;
        let result = (|| -> Result<Commit> {
            let audit = cs.audit_writes();
            let event_count = cs.events.len() as u64;
            for w in std::mem::take(&mut cs.writes).into_iter().chain(audit) {
                step(&mut n)?;
                state.apply(tenant, w, &mut undo)?;
            }
            if event_count == 0 {
                return Ok(Commit { events: None });
            }
            step(&mut n)?;
            let first = state.alloc_seq(tenant, EVENT_SEQUENCE, event_count, &mut undo)?;
            for w in cs.event_writes(first) {
                step(&mut n)?;
                state.apply(tenant, w, &mut undo)?;
            }
            Ok(Commit {
                events: Some((first, first + event_count - 1)),
            })
        })();
        if result.is_err() {
            state.rollback(undo);
        }
        result
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn get<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        key: &'a [Value],
    ) -> BoxFuture<'a, Result<Option<Row>>> {
        let r = (|| {
            crate::store::check_key(&self.schema, table, key)?;
            let st = self.lock();
            Ok(st.table(table)?.rows.get(&(tenant, key.to_vec())).cloned())
        })();
        Box::pin(async move { r })
    }

    fn select<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        let r = crate::store::check_select(&self.schema, select).and_then(|()| {
            self.lock()
                .sorted(tenant, select)
                .map(|v| v.into_iter().map(|(_, r)| r).collect())
        });
        Box::pin(async move { r })
    }

    fn count<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        cond: &'a Cond,
    ) -> BoxFuture<'a, Result<u64>> {
        let r = (|| {
            if let Ok(def) = self.schema.table(table) {
                crate::store::check_cond(&self.schema, def, cond)?;
            }
            let st = self.lock();
            let t = st.table(table)?;
            st.check_cond(t, cond)?;
            let mut n = 0;
            for row in t.candidates(tenant, cond) {
                if st.eval(tenant, t, cond, row)? == Some(true) {
                    n += 1;
                }
            }
            Ok(n)
        })();
        Box::pin(async move { r })
    }

    fn aggregate<'a>(
        &'a self,
        tenant: TenantId,
        agg: &'a Aggregate,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        let r = (|| {
            if let Ok(def) = self.schema.table(agg.table) {
                crate::store::check_cond(&self.schema, def, &agg.cond)?;
            }
            let st = self.lock();
            let t = st.table(agg.table)?;
            let pos = |c: &str| {
                t.pos(c)
                    .ok_or_else(|| Error::Config(format!("unknown column {c}")))
            };
            let group_pos = agg
                .group_by
                .iter()
                .map(|c| pos(c))
                .collect::<Result<Vec<_>>>()?;
            // `None`: a count; `Some(p)`: the sum of column p.
            let measure_pos = agg
                .measures
                .iter()
                .map(|m| match m {
                    Measure::Count => Ok(None),
                    Measure::Sum(c) => pos(c).map(Some),
                })
                .collect::<Result<Vec<_>>>()?;
            st.check_cond(t, &agg.cond)?;
            let bucket_pos = match &agg.buckets {
                None => None,
                Some(b) => {
                    b.check()?;
                    Some((b, pos(&b.column)?))
                }
            };
            // Groups keyed by the rows' own cells (borrowed while the lock is held): a
            // row's key is looked up without cloning its cells.
            let plan = st.plan(t, &agg.cond)?;
            let mut groups: BTreeMap<(usize, Vec<&Value>), Vec<i128>> = BTreeMap::new();
            let mut key: (usize, Vec<&Value>) = (0, Vec::with_capacity(group_pos.len()));
            for row in t.candidates(tenant, &agg.cond) {
                if st.eval_plan(tenant, t, &plan, row)? != Some(true) {
                    continue;
                }
                if let Some((b, p)) = bucket_pos {
                    match b.index_of(&row[p]) {
                        Some(i) => key.0 = i,
                        None => continue,
                    }
                }
                key.1.clear();
                key.1.extend(group_pos.iter().map(|&p| &row[p]));
                let acc = match groups.get_mut(&key) {
                    Some(acc) => acc,
                    None => groups
                        .entry(key.clone())
                        .or_insert_with(|| vec![0; measure_pos.len()]),
                };
                for (a, m) in acc.iter_mut().zip(&measure_pos) {
                    match m {
                        None => *a += 1,
                        Some(p) => *a += i128::from(row[*p].as_int().unwrap_or(0)),
                    }
                }
            }
            if agg.group_by.is_empty() && agg.buckets.is_none() && groups.is_empty() {
                groups.insert((0, vec![]), vec![0; agg.measures.len()]);
            }
            groups
                .into_iter()
                .map(|((i, g), acc)| {
                    let mut out: Vec<Value> = Vec::with_capacity(g.len() + acc.len() + 1);
                    if agg.buckets.is_some() {
                        out.push(Value::Int(i as i64));
                    }
                    out.extend(g.into_iter().cloned());
                    out.extend(acc.into_iter().map(Value::sum));
                    Ok(out)
                })
                .collect()
        })();
        Box::pin(async move { r })
    }

    fn commit(&self, changeset: Changeset) -> BoxFuture<'_, Result<Commit>> {
        let r = self.commit_now(changeset);
        Box::pin(async move { r })
    }

    fn reserve<'a>(
        &'a self,
        tenant: TenantId,
        sequence: &'a str,
        n: u64,
    ) -> BoxFuture<'a, Result<u64>> {
        let r = crate::store::check_reserve(sequence, n).and_then(|()| {
            let mut state = self.lock();
            let mut undo = vec![];
            state.alloc_seq(tenant, sequence, n, &mut undo)
        });
        Box::pin(async move { r })
    }

    fn inject_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{RecordKind, RecordRef};
    use crate::store::{CmpOp, Migration, ModuleMigrations, SchemaStep};
    use crate::store::{ColumnDef, ColumnType};

    fn backend() -> MemoryBackend {
        let t = TableDef::new(
            "t_items",
            [
                ColumnDef::required("id", ColumnType::Int),
                ColumnDef::optional("n", ColumnType::Int),
            ],
            ["id"],
        );
        let mut modules = vec![ModuleMigrations {
            module: "core",
            migrations: crate::module::Module::migrations(&crate::module::CoreModule),
        }];
        modules.push(ModuleMigrations {
            module: "t",
            migrations: vec![Migration {
                version: 1,
                description: "t",
                steps: vec![SchemaStep::CreateTable(t)],
            }],
        });
        MemoryBackend::new(Schema::build(modules).unwrap())
    }

    fn cs(tenant: TenantId, writes: Vec<Write>) -> Changeset {
        Changeset {
            tenant,
            actor: None,
            origin: "test".into(),
            at: chrono::Utc::now(),
            writes,
            audit: vec![],
            events: vec![],
            cause: None,
        }
    }

    fn run<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn unknown_columns_are_errors_without_rows() {
        let b = backend();
        let t = TenantId::new();
        let bad = Cond::Or(vec![Cond::True, Cond::IsNull("nope".into())]);
        assert!(matches!(
            run(b.count(t, "t_items", &bad)),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            run(b.select(t, &Select::new("t_items", bad.clone()))),
            Err(Error::Config(_))
        ));
        let agg = Aggregate {
            table: "t_items",
            cond: Cond::True,
            group_by: vec![],
            measures: vec![Measure::Sum("nope".into())],
            buckets: None,
        };
        assert!(matches!(run(b.aggregate(t, &agg)), Err(Error::Config(_))));
        let del = Write::DeleteWhere {
            table: "t_items",
            cond: bad,
        };
        assert!(matches!(
            run(b.commit(cs(t, vec![del]))),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn a_failed_commit_undoes_an_update_of_the_key() {
        let b = backend();
        let t = TenantId::new();
        let insert = |id: i64| Write::Insert {
            table: "t_items",
            row: vec![Value::Int(id), Value::Null],
        };
        run(b.commit(cs(t, vec![insert(1)]))).unwrap();
        let move_key = Write::Update {
            table: "t_items",
            key: vec![Value::Int(1)],
            set: vec![("id", Value::Int(2))],
            expect_version: None,
            record: RecordRef::new(RecordKind::new("t_item"), uuid::Uuid::nil()),
        };
        // The update moves row 1 to key 2; the duplicate insert then fails the commit.
        let r = run(b.commit(cs(t, vec![move_key, insert(3), insert(3)])));
        assert!(matches!(r, Err(Error::Duplicate { .. })), "{r:?}");
        let rows = run(b.select(
            t,
            &Select::new("t_items", Cond::Cmp("id".into(), CmpOp::Gte, Value::Int(0))),
        ))
        .unwrap();
        assert_eq!(rows, vec![vec![Value::Int(1), Value::Null]]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Sums of any 64-bit values are exact (no overflow error): the aggregate equals
        /// the `i128` sum as `Value::sum`, and `as_sum` reads it back.
        #[test]
        fn sums_are_exact_past_64_bits(
            ns in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(i64::MAX),
                    proptest::strategy::Just(i64::MIN),
                    proptest::prelude::any::<i64>(),
                ],
                0..40,
            )
        ) {
            let b = backend();
            let t = TenantId::new();
            let writes = ns
                .iter()
                .enumerate()
                .map(|(i, n)| Write::Insert {
                    table: "t_items",
                    row: vec![Value::Int(i as i64), Value::Int(*n)],
                })
                .collect();
            run(b.commit(cs(t, writes))).unwrap();
            let agg = Aggregate {
                table: "t_items",
                cond: Cond::True,
                group_by: vec![],
                measures: vec![Measure::Sum("n".into())],
                buckets: None,
            };
            let total: i128 = ns.iter().map(|&n| i128::from(n)).sum();
            let got = run(b.aggregate(t, &agg)).unwrap();
            proptest::prop_assert_eq!(&got, &vec![vec![Value::sum(total)]]);
            proptest::prop_assert_eq!(got[0][0].as_sum(), Some(total));
            proptest::prop_assert_eq!(
                matches!(got[0][0], Value::Int(_)),
                i64::try_from(total).is_ok()
            );
        }
    }

    #[test]
    fn nul_and_bad_dates_are_validation_errors_before_any_write() {
        let b = backend();
        let t = TenantId::new();
        let r = run(b.count(t, "t_items", &Cond::eq("n", "x\0")));
        assert!(
            matches!(&r, Err(Error::Validation(v)) if v.has("n")),
            "{r:?}"
        );
        assert!(
            crate::store::check_cell("d", Some(ColumnType::Date), &"9999-12-31".into()).is_ok()
        );
        assert!(
            crate::store::check_cell("d", Some(ColumnType::Date), &"0001-01-01".into()).is_ok()
        );
        for bad in [
            "10000-01-01",
            "+10000-01-01",
            "-0001-01-01",
            "0000-01-01",
            "2024-1-05",
            "",
        ] {
            let r = crate::store::check_cell("d", Some(ColumnType::Date), &bad.into());
            assert!(
                matches!(&r, Err(Error::Validation(v)) if v.has("d")),
                "{bad:?}: {r:?}"
            );
        }
        assert_eq!(Value::Text("12a".into()).as_sum(), None);
        assert_eq!(Value::Text("-".into()).as_sum(), None);
        assert_eq!(Value::Text("+5".into()).as_sum(), None);
    }
}
