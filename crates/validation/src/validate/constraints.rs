//! Invariants: the FHIRPath constraints of elements and of datatypes (`native.rs` has the native versions of
//! hot core ones).

use rex_fhir::{IssueCode, Rule, Severity};
use serde_json::Value;

use super::Walk;
use crate::defs::resource_type;
use crate::fhirpath::{self, Env, Item};
use crate::model::{Constraint, Elem};

impl<'v> Walk<'v> {
    pub(super) fn type_constraints(&mut self, root: &'v Elem, elem: &Elem, node: &'v Value, ty: &'v str) {
        if root.constraints.iter().all(|c| elem.constraints.iter().any(|e| e.key == c.key)) {
            return;
        }
        let before = self.issues.len();
        self.constraints(root, Some(node), None, ty);
        // drop duplicates of constraints the element already declared
        let keys: Vec<&str> = elem.constraints.iter().map(|c| c.key.as_str()).collect();
        let mut i = before;
        while i < self.issues.len() {
            let duplicate = matches!(self.issues[i].rule.as_deref(), Some(Rule::Constraint { key, .. }) if keys.contains(&key.as_str()));
            if duplicate {
                self.issues.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// `%rootResource`: the resource that holds the current one when it is contained; otherwise the current
    /// resource itself (a Bundle entry or a Parameters resource is its own root).
    pub(super) fn root_resource(&self) -> Option<&'v Value> {
        let mut i = self.resources.len().checked_sub(1)?;
        while i > 0 && self.contained.get(i).copied().unwrap_or(false) {
            i -= 1;
        }
        self.resources.get(i).copied()
    }

    pub(super) fn constraints(
        &mut self,
        elem: &Elem,
        node: Option<&'v Value>,
        companion: Option<&'v Value>,
        ty: &'v str,
    ) {
        for c in &elem.constraints {
            if let Some(f) = c.native {
                if !f(node.unwrap_or(&Value::Null), self.root_resource()) {
                    self.constraint_failed(c);
                }
                continue;
            }
            let Some(expr) = &c.expr else { continue };
            let root = self.root_resource();
            let cur = self.resources.last().copied();
            let env = Env {
                model: self.v,
                resource: cur.map(|r| Item::Node(Some(r), None, resource_type(r).unwrap_or(""))),
                root_resource: root.map(|r| Item::Node(Some(r), None, resource_type(r).unwrap_or(""))),
                context: Some(Item::Node(node, companion, ty)),
            };
            // A resource has the type its structure's root element names; the lookup is skipped for other nodes.
            let is_root = !elem.path.contains('.');
            let item_ty =
                if is_root && node.and_then(|n| n.get("resourceType")).is_some() { elem.path.as_str() } else { ty };
            let item = Item::Node(node, companion, item_ty);
            match fhirpath::check(expr, item, &env) {
                Ok(true) => {}
                Ok(false) => self.constraint_failed(c),
                Err(e) => {
                    let msg = format!("Constraint {} could not be evaluated: {e}", c.key);
                    let rule = Rule::ConstraintNotEvaluated { key: c.key.clone(), error: e.to_string() };
                    self.report_rule(Severity::Information, IssueCode::Informational, msg, rule);
                }
            }
        }
    }

    pub(super) fn constraint_failed(&mut self, constraint: &Constraint) {
        let msg = format!("Constraint failed: {}: '{}'", constraint.key, constraint.human);
        let severity = if constraint.error { Severity::Error } else { Severity::Warning };
        let rule = Rule::Constraint { key: constraint.key.clone(), human: constraint.human.clone() };
        self.report_rule(severity, IssueCode::Invariant, msg, rule);
    }
}
