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
        Expr::Field(_) | Expr::Lit(_) | Expr::Payload | Expr::Item(_) => {}
        Expr::Neg(a) | Expr::Not(a) | Expr::IsNull(a, _) | Expr::IsBool(a, _, _) | Expr::Like(a, _, _) => bind_item(a, alias),
        Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) | Expr::Concat(a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::LikeDyn(a, b, _, _) => {
            bind_item(a, alias);
            bind_item(b, alias);
        }
        Expr::InList(a, l, _) => {
            bind_item(a, alias);
            l.iter_mut().for_each(|x| bind_item(x, alias));
        }
        Expr::Between(a, b, c, _) => {
            bind_item(a, alias);
            bind_item(b, alias);
            bind_item(c, alias);
        }
        Expr::Case(o, w, el) => {
            if let Some(o) = o {
                bind_item(o, alias);
            }
            for (a, b) in w {
                bind_item(a, alias);
                bind_item(b, alias);
            }
            if let Some(el) = el {
                bind_item(el, alias);
            }
        }
        Expr::Array(l) | Expr::Call(_, l) => l.iter_mut().for_each(|x| bind_item(x, alias)),
    }
}
