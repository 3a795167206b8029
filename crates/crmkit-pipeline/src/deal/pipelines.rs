//! Pipelines and stages: the default pipeline, creation, renaming, stage changes.

use std::collections::HashSet;

use crmkit_core::service::{self, list_page, stage_created};
use crmkit_core::store::{Cond, OrderKey, Select, Value, Write};
use crmkit_core::text::{check_text, fold};
use crmkit_core::{
    AuditChange, AuditEntry, Changeset, Ctx, Error, NewEvent, Page, PipelineId, Query, RecordRef,
    Result, StageId, ValidationErrors,
};

use super::rows::{self, DEAL_TABLE, PIPELINE_TABLE, STAGE_TABLE};
use super::{
    Deals, MAX_STAGES, NewPipeline, NewStage, Pipeline, Stage, StageKind, StagePatch, to_json,
};

/// The deal fields a stage may require (besides `custom.<key>`).
pub const REQUIRABLE_FIELDS: &[&str] = &[
    "amount",
    "expected_close",
    "organization",
    "contacts",
    "next_step",
    "campaign",
];

fn check_stage(errs: &mut ValidationErrors, prefix: &str, s: &NewStage) {
    errs.check(check_text(&format!("{prefix}name"), &s.name, 100, true));
    if s.probability > 100 {
        errs.push(format!("{prefix}probability"), "must be 0 to 100");
    }
    if let Some(d) = s.rotting_days
        && !(1..=3650).contains(&d)
    {
        errs.push(format!("{prefix}rotting_days"), "must be 1 to 3650");
    }
    for (i, f) in s.required_fields.iter().enumerate() {
        let ok = REQUIRABLE_FIELDS.contains(&f.as_str())
            || f.strip_prefix("custom.").is_some_and(|k| {
                !k.is_empty()
                    && k.len() <= 64
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !ok {
            errs.push(
                format!("{prefix}required_fields[{i}]"),
                format!(
                    "{f:?} is not one of {} or custom.<key>",
                    REQUIRABLE_FIELDS.join(", ")
                ),
            );
        }
    }
}

/// Checks a pipeline's whole list of stages: each stage, unique names, at least one open
/// stage, at most [`MAX_STAGES`].
fn check_stage_list(errs: &mut ValidationErrors, stages: &[NewStage]) {
    if stages.len() > MAX_STAGES {
        errs.push("stages", format!("at most {MAX_STAGES} stages"));
        return;
    }
    if !stages.iter().any(|s| s.kind == StageKind::Open) {
        errs.push("stages", "a pipeline needs at least one open stage");
    }
    let mut names = HashSet::new();
    for (i, s) in stages.iter().enumerate() {
        check_stage(errs, &format!("stages[{i}]."), s);
        if !names.insert(fold(s.name.trim())) {
            errs.push(format!("stages[{i}].name"), "is used twice in the pipeline");
        }
    }
}

fn as_new(s: &Stage) -> NewStage {
    NewStage {
        name: s.name.clone(),
        probability: s.probability,
        kind: s.kind,
        rotting_days: s.rotting_days,
        required_fields: s.required_fields.clone(),
    }
}

fn default_stages() -> Vec<NewStage> {
    vec![
        NewStage::open("Qualification", 10),
        NewStage::open("Proposal", 40).requires(&["amount"]),
        NewStage::open("Negotiation", 70),
        NewStage::won("Won"),
        NewStage::lost("Lost"),
    ]
}

impl Deals {
    pub(crate) async fn load_pipeline(&self, ctx: &Ctx, id: PipelineId) -> Result<Pipeline> {
        let kind = super::PIPELINE_KIND;
        let row = service::row_by_id(&self.store, ctx, PIPELINE_TABLE, kind.clone(), id).await?;
        if !row[9].is_null() {
            return Err(Error::not_found(kind, id));
        }
        let (mut p, _) = rows::decode_pipeline(row)?;
        let mut s = Select::new(
            STAGE_TABLE,
            Cond::eq("pipeline_id", id.as_uuid()).and(Cond::IsNull("removed_at".into())),
        );
        s.order = vec![OrderKey::asc("position"), OrderKey::asc("id")];
        for r in self.store.backend().select(ctx.tenant(), &s).await? {
            p.stages.push(rows::decode_stage(r)?.0);
        }
        Ok(p)
    }

    /// A stage by id, removed or not.
    pub(crate) async fn stage_by_id(&self, ctx: &Ctx, id: StageId) -> Result<Stage> {
        let row = service::row_by_id(&self.store, ctx, STAGE_TABLE, super::STAGE_KIND, id).await?;
        Ok(rows::decode_stage(row)?.0)
    }

    /// Every live stage of the tenant.
    pub(crate) async fn all_stages(&self, ctx: &Ctx) -> Result<Vec<Stage>> {
        let s = Select::new(STAGE_TABLE, Cond::IsNull("removed_at".into()));
        service::select_rows(&self.store, ctx, &s, |r| rows::decode_stage(r).map(|x| x.0)).await
    }
}

/// The pipelines API: a tenant's sales processes and their stages. Made by
/// `Crm::pipelines`, [`Pipelines::new`] or [`Deals::pipelines`].
#[derive(Clone, Debug)]
pub struct Pipelines {
    deals: Deals,
}

impl Pipelines {
    /// The API over a store composed with the pipeline module.
    pub fn new(store: &crmkit_core::Store) -> Result<Self> {
        Ok(Pipelines {
            deals: Deals::new(store)?,
        })
    }

    pub(crate) fn from_deals(deals: Deals) -> Self {
        Pipelines { deals }
    }

    /// The underlying store.
    pub fn store(&self) -> &crmkit_core::Store {
        &self.deals.store
    }

    /// A pipeline of the tenant with its stages.
    pub async fn get(&self, ctx: &Ctx, id: PipelineId) -> Result<Pipeline> {
        self.deals.load_pipeline(ctx, id).await
    }

    /// A page of the tenant's pipelines with their stages: filter, sort and keyset page
    /// over [`super::rows::PIPELINE_FIELDS`] (the generic record API lists pipelines with
    /// it). Pipelines are tenant settings: every actor sees all of them.
    pub async fn list(&self, ctx: &Ctx, q: &Query) -> Result<Page<Pipeline>> {
        let scope = if q.include_deleted {
            Cond::True
        } else {
            Cond::IsNull("deleted_at".into())
        };
        let mut page = list_page(
            &self.deals.store,
            ctx,
            q,
            &rows::PIPELINE_FIELDS,
            scope,
            |r| rows::decode_pipeline(r).map(|p| p.0),
            |_| None,
        )
        .await?;
        if page.items.is_empty() {
            return Ok(page);
        }
        let ids = page
            .items
            .iter()
            .map(|p| Value::Uuid(p.id.as_uuid()))
            .collect();
        let mut s = Select::new(
            STAGE_TABLE,
            Cond::In("pipeline_id".into(), ids).and(Cond::IsNull("removed_at".into())),
        );
        s.order = vec![OrderKey::asc("position"), OrderKey::asc("id")];
        for r in self.deals.store.backend().select(ctx.tenant(), &s).await? {
            let st = rows::decode_stage(r)?.0;
            if let Some(p) = page.items.iter_mut().find(|p| p.id == st.pipeline) {
                p.stages.push(st);
            }
        }
        Ok(page)
    }

    /// The audit trail of a pipeline (its stages' changes included), oldest first.
    pub async fn audit(&self, ctx: &Ctx, id: PipelineId) -> Result<Vec<AuditEntry>> {
        self.deals.load_pipeline(ctx, id).await?;
        self.deals
            .store
            .audit_unchecked(ctx, &RecordRef::from(id))
            .await
    }

    /// Every pipeline of the tenant with its stages, in creation order.
    pub async fn all(&self, ctx: &Ctx) -> Result<Vec<Pipeline>> {
        let mut s = Select::new(PIPELINE_TABLE, Cond::IsNull("deleted_at".into()));
        s.order = vec![OrderKey::asc("position"), OrderKey::asc("id")];
        let mut out = service::select_rows(&self.deals.store, ctx, &s, |r| {
            rows::decode_pipeline(r).map(|p| p.0)
        })
        .await?;
        let mut stages = self.deals.all_stages(ctx).await?;
        stages.sort_by_key(|s| (s.position, s.id));
        for st in stages {
            if let Some(p) = out.iter_mut().find(|p| p.id == st.pipeline) {
                p.stages.push(st);
            }
        }
        Ok(out)
    }

    async fn default(&self, ctx: &Ctx) -> Result<Option<Pipeline>> {
        let s = Select::new(PIPELINE_TABLE, Cond::eq("default_claim", 1i64));
        match self
            .deals
            .store
            .backend()
            .select(ctx.tenant(), &s)
            .await?
            .pop()
        {
            Some(r) => Ok(Some(
                self.deals
                    .load_pipeline(ctx, rows::decode_pipeline(r)?.0.id)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// The tenant's default pipeline (Qualification 10%, Proposal 40% requiring an
    /// amount, Negotiation 70%, Won, Lost), created on first call. Idempotent, also under
    /// concurrent calls: the default is claimed in a unique index, and a call that loses
    /// the race returns the winner's pipeline. Any actor may call it.
    pub async fn ensure_default(&self, ctx: &Ctx) -> Result<Pipeline> {
        if let Some(p) = self.default(ctx).await? {
            return Ok(p);
        }
        let input = NewPipeline {
            name: "Sales".into(),
            currency: None,
            stages: default_stages(),
        };
        match self.insert(ctx, input, true).await {
            Ok(p) => Ok(p),
            Err(Error::Duplicate { .. }) => self
                .default(ctx)
                .await?
                .ok_or_else(|| Error::storage("the default pipeline claim has no pipeline")),
            Err(e) => Err(e),
        }
    }

    /// Creates a pipeline with its stages (Admin or Manager).
    pub async fn create(&self, ctx: &Ctx, input: NewPipeline) -> Result<Pipeline> {
        ctx.actor().require_manage("create pipeline")?;
        self.insert(ctx, input, false).await
    }

    async fn insert(&self, ctx: &Ctx, input: NewPipeline, is_default: bool) -> Result<Pipeline> {
        let mut errs = ValidationErrors::new();
        errs.check(check_text("name", &input.name, 100, true));
        check_stage_list(&mut errs, &input.stages);
        errs.into_result()?;
        let position = self
            .store()
            .backend()
            .count(ctx.tenant(), PIPELINE_TABLE, &Cond::True)
            .await? as i64;
        let now = ctx.now();
        let id = PipelineId::new();
        let p = Pipeline {
            id,
            name: input.name.clone(),
            currency: input.currency,
            is_default,
            stages: input
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| Stage {
                    id: StageId::new(),
                    pipeline: id,
                    name: s.name.clone(),
                    position: i as u32,
                    probability: s.probability,
                    kind: s.kind,
                    rotting_days: s.rotting_days,
                    required_fields: s.required_fields.clone(),
                })
                .collect(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Insert {
            table: PIPELINE_TABLE,
            row: rows::pipeline_row(&p, position),
        });
        for s in &p.stages {
            cs.writes.push(Write::Insert {
                table: STAGE_TABLE,
                row: rows::stage_row(s),
            });
        }
        let record = RecordRef::from(id);
        stage_created(&mut cs, record, "pipeline", &p);
        self.deals.store.commit(cs).await?;
        Ok(p)
    }

    /// Loads a pipeline for a change by a manager at `expected_version`.
    async fn for_change(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        action: &str,
    ) -> Result<Pipeline> {
        ctx.actor().require_manage(action)?;
        let p = self.deals.load_pipeline(ctx, id).await?;
        if p.version != expected_version {
            return Err(Error::conflict(id, expected_version, p.version));
        }
        Ok(p)
    }

    /// Writes the pipeline row's new name / version and the audit and event of a change.
    fn change(&self, ctx: &Ctx, cs: &mut Changeset, old: &Pipeline, new: &mut Pipeline) {
        new.updated_at = ctx.now();
        new.version = old.version + 1;
        let record = RecordRef::from(old.id);
        cs.writes.insert(
            0,
            Write::Update {
                table: PIPELINE_TABLE,
                key: vec![Value::Uuid(old.id.as_uuid())],
                set: vec![
                    ("name", Value::Text(new.name.clone())),
                    ("updated_at", Value::timestamp(new.updated_at)),
                ],
                expect_version: Some(old.version),
                record: record.clone(),
            },
        );
        let mut changed = vec![];
        for (field, o, n) in [
            ("name", to_json(&old.name), to_json(&new.name)),
            ("stages", to_json(&old.stages), to_json(&new.stages)),
        ] {
            if o != n {
                changed.push(field.to_string());
                cs.audit.push(AuditChange {
                    record: record.clone(),
                    field: field.into(),
                    old: Some(o.to_string()),
                    new: Some(n.to_string()),
                });
            }
        }
        cs.events.push(NewEvent::new(
            "pipeline.updated",
            record,
            changed,
            to_json(&*new),
        ));
    }

    /// A pipeline for a change that changes nothing (a generic patch without a name): the
    /// same access and version checks as a change.
    pub(crate) async fn unchanged(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
    ) -> Result<Pipeline> {
        self.for_change(ctx, id, expected_version, "update pipeline")
            .await
    }

    /// Changes a pipeline whose current version is `expected_version`: a patch without
    /// a name changes nothing (but is checked for access and version like a change).
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        patch: crate::kinds::PipelinePatch,
    ) -> Result<Pipeline> {
        match patch.name {
            Some(name) => self.rename(ctx, id, expected_version, &name).await,
            None => self.unchanged(ctx, id, expected_version).await,
        }
    }

    /// Renames a pipeline.
    pub async fn rename(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        name: &str,
    ) -> Result<Pipeline> {
        let old = self
            .for_change(ctx, id, expected_version, "rename pipeline")
            .await?;
        check_text("name", name, 100, true)?;
        let mut new = old.clone();
        new.name = name.to_owned();
        let mut cs = Changeset::new(ctx);
        self.change(ctx, &mut cs, &old, &mut new);
        self.deals.store.commit(cs).await?;
        Ok(new)
    }

    /// Position updates for stages whose position differs from their index in `stages`.
    fn reposition(cs: &mut Changeset, old: &Pipeline, stages: &mut [Stage]) {
        for (i, s) in stages.iter_mut().enumerate() {
            let i = i as u32;
            if old.stage(s.id).is_some_and(|o| o.position != i) {
                cs.writes.push(Write::Update {
                    table: STAGE_TABLE,
                    key: vec![Value::Uuid(s.id.as_uuid())],
                    set: vec![("position", Value::Int(i64::from(i)))],
                    expect_version: None,
                    record: RecordRef::from(s.id),
                });
            }
            s.position = i;
        }
    }

    /// Adds a stage at `position` (0 first; the end when absent or beyond it).
    pub async fn add_stage(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        stage: NewStage,
        position: Option<u32>,
    ) -> Result<Pipeline> {
        let old = self
            .for_change(ctx, id, expected_version, "add stage")
            .await?;
        let mut list: Vec<NewStage> = old.stages.iter().map(as_new).collect();
        let at = position
            .map(|p| (p as usize).min(list.len()))
            .unwrap_or(list.len());
        list.insert(at, stage.clone());
        let mut errs = ValidationErrors::new();
        check_stage_list(&mut errs, &list);
        // Name the new stage's fields without the list index.
        let prefix = format!("stages[{at}].");
        for e in &mut errs.errors {
            if let Some(rest) = e.field.strip_prefix(&prefix) {
                e.field = rest.to_owned();
            }
        }
        errs.into_result()?;
        let mut new = old.clone();
        let s = Stage {
            id: StageId::new(),
            pipeline: id,
            name: stage.name,
            position: at as u32,
            probability: stage.probability,
            kind: stage.kind,
            rotting_days: stage.rotting_days,
            required_fields: stage.required_fields,
        };
        new.stages.insert(at, s.clone());
        let mut cs = Changeset::new(ctx);
        Self::reposition(&mut cs, &old, &mut new.stages);
        cs.writes.push(Write::Insert {
            table: STAGE_TABLE,
            row: rows::stage_row(&s),
        });
        self.change(ctx, &mut cs, &old, &mut new);
        self.deals.store.commit(cs).await?;
        Ok(new)
    }

    /// Puts the stages in a new order: `order` lists every live stage once.
    pub async fn reorder_stages(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        order: &[StageId],
    ) -> Result<Pipeline> {
        let old = self
            .for_change(ctx, id, expected_version, "reorder stages")
            .await?;
        let given: HashSet<StageId> = order.iter().copied().collect();
        let live: HashSet<StageId> = old.stages.iter().map(|s| s.id).collect();
        if given != live || order.len() != old.stages.len() {
            return Err(Error::validation(
                "order",
                "must list every stage of the pipeline exactly once",
            ));
        }
        let mut new = old.clone();
        new.stages = order
            .iter()
            .map(|s| old.stage(*s).cloned().expect("checked"))
            .collect();
        let mut cs = Changeset::new(ctx);
        Self::reposition(&mut cs, &old, &mut new.stages);
        self.change(ctx, &mut cs, &old, &mut new);
        self.deals.store.commit(cs).await?;
        Ok(new)
    }

    /// Changes a stage's name, probability, kind, rotting threshold or required fields.
    /// Deals in the stage without a probability override take a new probability (and
    /// weighted value) in the same changeset. The kind of a stage that holds deals
    /// cannot change.
    pub async fn update_stage(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        stage: StageId,
        patch: StagePatch,
    ) -> Result<Pipeline> {
        let old = self
            .for_change(ctx, id, expected_version, "update stage")
            .await?;
        let Some(i) = old.stages.iter().position(|s| s.id == stage) else {
            return Err(Error::validation("stage", "is not a stage of the pipeline"));
        };
        let mut new = old.clone();
        let s = &mut new.stages[i];
        if let Some(v) = patch.name {
            s.name = v;
        }
        if let Some(v) = patch.probability {
            s.probability = v;
        }
        if let Some(v) = patch.kind {
            s.kind = v;
        }
        if let Some(v) = patch.rotting_days {
            s.rotting_days = v;
        }
        if let Some(v) = patch.required_fields {
            s.required_fields = v;
        }
        let s = s.clone();
        let list: Vec<NewStage> = new.stages.iter().map(as_new).collect();
        let mut errs = ValidationErrors::new();
        check_stage_list(&mut errs, &list);
        let prefix = format!("stages[{i}].");
        for e in &mut errs.errors {
            if let Some(rest) = e.field.strip_prefix(&prefix) {
                e.field = rest.to_owned();
            }
        }
        errs.into_result()?;
        let deals = self.deals_in_stage(ctx, stage).await?;
        let o = &old.stages[i];
        if s.kind != o.kind && !deals.is_empty() {
            return Err(Error::InvalidTransition {
                record: RecordRef::from(stage),
                reason: format!(
                    "the stage holds {} deal(s); its kind cannot change",
                    deals.len()
                ),
            });
        }
        let mut cs = Changeset::new(ctx);
        cs.writes.push(Write::Update {
            table: STAGE_TABLE,
            key: vec![Value::Uuid(stage.as_uuid())],
            set: rows::stage_row(&s)
                .into_iter()
                .zip(rows::stage_row(o))
                .zip([
                    "id",
                    "pipeline_id",
                    "name",
                    "position",
                    "probability",
                    "kind",
                    "rotting_days",
                    "required_fields",
                    "removed_at",
                ])
                .filter(|((n, o), _)| n != o)
                .map(|((n, _), c)| (c, n))
                .collect(),
            expect_version: None,
            record: RecordRef::from(stage),
        });
        if s.probability != o.probability {
            for (d, _) in deals
                .iter()
                .filter(|(d, _)| d.probability_override.is_none())
            {
                cs.writes.push(Write::Update {
                    table: DEAL_TABLE,
                    key: vec![Value::Uuid(d.id.as_uuid())],
                    set: vec![
                        ("probability", Value::Int(i64::from(s.probability))),
                        (
                            "weighted_x100",
                            rows::weighted_x100(&d.amount, s.probability)?,
                        ),
                    ],
                    expect_version: None,
                    record: RecordRef::from(d.id),
                });
            }
        }
        self.change(ctx, &mut cs, &old, &mut new);
        self.deals.store.commit(cs).await?;
        Ok(new)
    }

    /// Every deal in a stage (deleted ones too), with its history sequence.
    async fn deals_in_stage(&self, ctx: &Ctx, stage: StageId) -> Result<Vec<(super::Deal, i64)>> {
        let s = Select::new(DEAL_TABLE, Cond::eq("stage_id", stage.as_uuid()));
        service::select_rows(&self.deals.store, ctx, &s, rows::decode_deal).await
    }

    /// Removes a stage. A stage that holds deals (deleted ones included) needs `move_to`,
    /// a stage of the same pipeline and kind, to which its deals move (each move appends
    /// a history entry). The last open stage cannot be removed.
    pub async fn remove_stage(
        &self,
        ctx: &Ctx,
        id: PipelineId,
        expected_version: u64,
        stage: StageId,
        move_to: Option<StageId>,
    ) -> Result<Pipeline> {
        let old = self
            .for_change(ctx, id, expected_version, "remove stage")
            .await?;
        let Some(i) = old.stages.iter().position(|s| s.id == stage) else {
            return Err(Error::validation("stage", "is not a stage of the pipeline"));
        };
        let removed = old.stages[i].clone();
        let mut new = old.clone();
        new.stages.remove(i);
        if !new.stages.iter().any(|s| s.kind == StageKind::Open) {
            return Err(Error::validation(
                "stage",
                "a pipeline needs at least one open stage",
            ));
        }
        let deals = self.deals_in_stage(ctx, stage).await?;
        let target = match move_to {
            Some(t) => {
                let Some(t) = new.stage(t).cloned() else {
                    return Err(Error::validation(
                        "move_to",
                        "is not another stage of the pipeline",
                    ));
                };
                if t.kind != removed.kind {
                    return Err(Error::validation(
                        "move_to",
                        "must be a stage of the same kind as the removed one",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let mut cs = Changeset::new(ctx);
        if !deals.is_empty() {
            let Some(target) = &target else {
                return Err(Error::validation(
                    "move_to",
                    format!(
                        "the stage holds {} deal(s); name a stage to move them to",
                        deals.len()
                    ),
                ));
            };
            for (d, seq) in &deals {
                self.deals
                    .transition(ctx, &mut cs, d, *seq, &new, target, None, false)
                    .await?;
            }
        }
        Self::reposition(&mut cs, &old, &mut new.stages);
        cs.writes.push(Write::Update {
            table: STAGE_TABLE,
            key: vec![Value::Uuid(stage.as_uuid())],
            set: vec![("removed_at", Value::timestamp(ctx.now()))],
            expect_version: None,
            record: RecordRef::from(stage),
        });
        self.change(ctx, &mut cs, &old, &mut new);
        self.deals.store.commit(cs).await?;
        Ok(new)
    }
}
