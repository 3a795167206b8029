//! The SQL of selects and counts cached by statement shape.
//!
//! Building a select with sea-query and rendering it costs several µs per call, for SQL
//! text that is the same every time a query of the same shape runs: only the bound values
//! change. A statement's *shape* is everything its SQL text depends on: the table, the
//! condition tree (node kinds, columns, operators, the number of values in an `IN`), the
//! sort keys, which keyset values are NULL, whether there is a limit, the omitted columns.
//! [`Shape`] walks a select (or count) in the renderer's order, writing that shape as a
//! byte key and collecting the values in the order their placeholders appear in the SQL,
//! as [`bind_of`] would bind them.
//!
//! The first statement of a shape is rendered by sea-query as before; its SQL is kept only
//! if sea-query bound exactly the values the walk collected. In debug builds (every test
//! run) a cached statement is also rendered again and compared with the cached SQL and the
//! collected values, so a walk that drifts from the renderer fails the test suites of all
//! three dialects. Values are always bound; the key holds no value, only shapes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crmkit_core::Result;
use crmkit_core::id::TenantId;
use crmkit_core::store::{CmpOp, ColumnType, Cond, OrderKey, Select, TableDef, Value};

use super::{Bind, CUSTOM_VALUES, Renderer, Stmt, bind_of, like_escape};

/// Shapes kept at most; past this the cache starts over (shapes are few in practice, but
/// `IN` lists of every length and arbitrary filter trees are distinct shapes).
const MAX_SHAPES: usize = 1024;

/// Cached SQL by shape key.
#[derive(Debug, Default)]
pub(crate) struct ShapeCache {
    sql: Mutex<HashMap<Box<[u8]>, Arc<str>>>,
}

impl ShapeCache {
    fn get(&self, key: &[u8]) -> Option<Arc<str>> {
        self.sql
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: Vec<u8>, sql: Arc<str>) {
        let mut m = self.sql.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_SHAPES {
            m.clear();
        }
        m.insert(key.into_boxed_slice(), sql);
    }
}

/// A statement's shape key and its values in placeholder order.
pub(crate) struct Shape {
    key: Vec<u8>,
    binds: Vec<Bind>,
}

impl Shape {
    fn new(kind: u8, table: &str) -> Shape {
        let mut key = Vec::with_capacity(64);
        key.push(kind);
        key.extend_from_slice(table.as_bytes());
        key.push(0);
        Shape {
            key,
            binds: Vec::with_capacity(8),
        }
    }

    fn tag(&mut self, b: u8) {
        self.key.push(b);
    }

    fn num(&mut self, n: usize) {
        self.key.extend_from_slice(&(n as u64).to_le_bytes());
    }

    /// Column `name` of `t`: its position goes into the key.
    fn col(&mut self, t: &TableDef, name: &str) -> Result<ColumnType> {
        let p = t
            .position(name)
            .ok_or_else(|| super::unknown_column(t.name, name))?;
        self.num(p);
        Ok(t.columns[p].ty)
    }

    fn bind(&mut self, ty: Option<ColumnType>, v: &Value) {
        self.binds.push(bind_of(ty, v));
    }

    fn tenant(&mut self, tenant: TenantId) {
        self.binds
            .push(Bind::Text(Some(tenant.as_uuid().hyphenated().to_string())));
    }

    fn text(&mut self, s: &str) {
        self.binds.push(Bind::Text(Some(s.to_owned())));
    }
}

fn op_tag(op: CmpOp) -> u8 {
    match op {
        CmpOp::Eq => b'=',
        CmpOp::Ne => b'!',
        CmpOp::Lt => b'<',
        CmpOp::Lte => b'l',
        CmpOp::Gt => b'>',
        CmpOp::Gte => b'g',
    }
}

impl Renderer {
    /// Mirrors [`Renderer::cond`].
    fn shape_cond(&self, s: &mut Shape, tenant: TenantId, t: &TableDef, c: &Cond) -> Result<()> {
        match c {
            Cond::True => s.tag(b'T'),
            Cond::False => s.tag(b'F'),
            Cond::Cmp(col, op, v) => {
                s.tag(b'C');
                s.tag(op_tag(*op));
                let ty = s.col(t, col)?;
                s.bind(Some(ty), v);
            }
            Cond::In(col, vs) => {
                s.tag(b'I');
                let ty = s.col(t, col)?;
                s.num(vs.len());
                for v in vs {
                    s.bind(Some(ty), v);
                }
            }
            Cond::IsNull(col) => {
                s.tag(b'N');
                s.col(t, col)?;
            }
            Cond::Contains(col, needle) => {
                s.tag(b'%');
                s.col(t, col)?;
                s.binds
                    .push(Bind::Text(Some(format!("%{}%", like_escape(needle)))));
            }
            Cond::StartsWith(col, prefix) => {
                s.tag(b'^');
                s.col(t, col)?;
                s.binds
                    .push(Bind::Text(Some(format!("{}%", like_escape(prefix)))));
            }
            Cond::And(cs) | Cond::Or(cs) => {
                s.tag(if matches!(c, Cond::And(_)) {
                    b'A'
                } else {
                    b'O'
                });
                s.num(cs.len());
                for c in cs {
                    self.shape_cond(s, tenant, t, c)?;
                }
            }
            Cond::Not(c) => {
                s.tag(b'~');
                self.shape_cond(s, tenant, t, c)?;
            }
            Cond::Custom { field, cond } => {
                s.tag(b'K');
                s.col(t, "id")?;
                let cv = self.table(CUSTOM_VALUES)?;
                s.tenant(tenant);
                s.text(&field.record_kind);
                s.text(&field.key);
                match cond {
                    Some(inner) => {
                        s.tag(b'(');
                        self.shape_cond(s, tenant, cv, inner)?;
                        s.tag(b')');
                    }
                    None => s.tag(b'-'),
                }
            }
        }
        Ok(())
    }

    /// Mirrors [`Renderer::scoped`].
    fn shape_scoped(&self, s: &mut Shape, tenant: TenantId, t: &TableDef, c: &Cond) -> Result<()> {
        s.tenant(tenant);
        self.shape_cond(s, tenant, t, c)
    }

    /// The key of one sort key (mirrors [`Renderer::order_expr`]); returns its column type.
    fn shape_order_key(&self, s: &mut Shape, t: &TableDef, o: &OrderKey) -> Result<ColumnType> {
        let ty = match &o.custom {
            None => {
                s.tag(b'c');
                s.col(t, &o.column)?
            }
            Some(_) => {
                s.tag(b'k');
                t.position("id")
                    .ok_or_else(|| super::unknown_column(t.name, "id"))?;
                let cv = self.table(CUSTOM_VALUES)?;
                s.col(cv, &o.column)?
            }
        };
        s.tag(u8::from(o.desc));
        s.tag(u8::from(o.null_as.is_some()));
        Ok(ty)
    }

    /// The values of one sort key's expression, in placeholder order.
    fn shape_order_binds(s: &mut Shape, tenant: TenantId, o: &OrderKey, ty: ColumnType) {
        if let Some(f) = &o.custom {
            s.tenant(tenant);
            s.text(&f.record_kind);
            s.text(&f.key);
            s.binds.push(Bind::Int(Some(0)));
        }
        if let Some(v) = &o.null_as {
            s.bind(Some(ty), v);
        }
    }

    /// The shape of [`Renderer::select`].
    fn select_shape(&self, tenant: TenantId, t: &TableDef, q: &Select) -> Result<Shape> {
        let mut s = Shape::new(b'S', t.name);
        for c in &t.columns {
            s.tag(u8::from(q.omit.iter().any(|o| o == c.name)));
        }
        // WHERE: tenant and condition, then the keyset position.
        s.tag(b'W');
        self.shape_scoped(&mut s, tenant, t, &q.cond)?;
        s.tag(b'O');
        let mut types = Vec::with_capacity(q.order.len());
        for o in &q.order {
            types.push(self.shape_order_key(&mut s, t, o)?);
        }
        if let Some(after) = &q.after {
            // Mirrors `Renderer::keyset`.
            let n = q.order.len().min(after.len());
            s.tag(b'@');
            s.num(n);
            for v in &after[..n] {
                s.tag(u8::from(v.is_null()));
            }
            for i in 0..n {
                let (o, ty, v) = (&q.order[i], types[i], &after[i]);
                if v.is_null() && o.desc {
                    continue;
                }
                for j in 0..i {
                    Self::shape_order_binds(&mut s, tenant, &q.order[j], types[j]);
                    if !after[j].is_null() {
                        s.bind(Some(types[j]), &after[j]);
                    }
                }
                Self::shape_order_binds(&mut s, tenant, o, ty);
                if !v.is_null() {
                    s.bind(Some(ty), v);
                    if o.desc {
                        Self::shape_order_binds(&mut s, tenant, o, ty);
                    }
                }
            }
        }
        // ORDER BY, then LIMIT.
        for (o, ty) in q.order.iter().zip(&types) {
            Self::shape_order_binds(&mut s, tenant, o, *ty);
        }
        match q.limit {
            Some(l) => {
                s.tag(b'L');
                s.binds.push(Bind::Int(Some(i64::from(l))));
            }
            None => s.tag(b'-'),
        }
        Ok(s)
    }

    /// The shape of [`Renderer::count`].
    fn count_shape(&self, tenant: TenantId, t: &TableDef, cond: &Cond) -> Result<Shape> {
        let mut s = Shape::new(b'#', t.name);
        self.shape_scoped(&mut s, tenant, t, cond)?;
        Ok(s)
    }

    /// The statement of `shape` from the cache, or else `build()` (cached when its values
    /// are the shape's). A shape that cannot be walked (an unknown column) is built, which
    /// reports the error.
    fn cached(&self, shape: Result<Shape>, build: impl Fn() -> Result<Stmt>) -> Result<Stmt> {
        let Ok(shape) = shape else {
            return build();
        };
        if let Some(sql) = self.shapes.get(&shape.key) {
            let stmt = Stmt {
                sql,
                binds: shape.binds,
            };
            if cfg!(debug_assertions) {
                let fresh = build()?;
                assert_eq!(*stmt.sql, *fresh.sql, "cached SQL of a shape");
                assert_eq!(stmt.binds, fresh.binds, "values of a cached shape");
            }
            return Ok(stmt);
        }
        let stmt = build()?;
        if stmt.binds == shape.binds {
            self.shapes.put(shape.key, stmt.sql.clone());
        } else {
            debug_assert!(
                false,
                "shape walk disagrees with the renderer for {}: {:?} vs {:?}",
                stmt.sql, shape.binds, stmt.binds
            );
        }
        Ok(stmt)
    }

    /// [`Renderer::build_select`] through the shape cache.
    pub(super) fn select_stmt(&self, tenant: TenantId, t: &TableDef, q: &Select) -> Result<Stmt> {
        self.cached(self.select_shape(tenant, t, q), || {
            self.build_select(tenant, t, q)
        })
    }

    /// [`Renderer::build_count`] through the shape cache.
    pub(super) fn count_stmt(&self, tenant: TenantId, t: &TableDef, cond: &Cond) -> Result<Stmt> {
        self.cached(self.count_shape(tenant, t, cond), || {
            self.build_count(tenant, t, cond)
        })
    }
}
