//! Binding the `FOREACH` alias: inside `DO` and `INCASE`, fields that start with the alias read
//! the current element.

use crate::rule::expr::{Expr, Seg};

use super::types::SelectItem;

/// Inside `DO`, a select item whose fields start with the FOREACH alias reads the element.
pub(super) fn bind_item_in(item: SelectItem, alias: Option<&str>) -> SelectItem {
    let Some(alias) = alias else {
        return item;
    };
    match item {
        SelectItem::Named { name, mut expr } => {
            bind_item(&mut expr, alias);
            SelectItem::Named { name, expr }
        }
        SelectItem::Flatten(mut expr) => {
            bind_item(&mut expr, alias);
            SelectItem::Flatten(expr)
        }
        SelectItem::Star => SelectItem::Star,
    }
}

/// Rewrites the fields `alias` and `alias.path…` of `e` into reads of the FOREACH element (the
/// alias shadows a payload field of the same name).
pub(super) fn bind_item(e: &mut Expr, alias: &str) {
    match e {
        Expr::Field(path) if matches!(path.first(), Some(Seg::Key(k)) if k == alias) => {
            let rest = path.split_off(1);
            *e = Expr::Item(rest);
        }
        other => other.children_mut().into_iter().for_each(|x| bind_item(x, alias)),
    }
}
