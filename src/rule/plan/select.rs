//! The FROM topic filter and the items of the select list.

use sqlparser::ast::{self, Ident, ObjectNamePart, SelectItem as AstItem, Spanned, TableFactor};

use super::compile::compile;
use super::types::{err_at, PResult, SelectItem};
use crate::rule::expr::{Expr, Seg};
use crate::topic::TopicFilter;

pub(super) fn from_filter(select: &ast::Select) -> PResult<TopicFilter> {
    let table = match select.from.as_slice() {
        [] => return Err(err_at(select.span(), "missing FROM \"topic filter\"")),
        [one] => one,
        [_, second, ..] => return Err(err_at(second.span(), "a rule reads one topic filter: FROM \"…\" takes one name")),
    };
    if let Some(j) = table.joins.first() {
        return Err(err_at(j.relation.span(), "JOIN is not supported in rules"));
    }
    match &table.relation {
        TableFactor::Table { name, alias, args, .. } => {
            if args.is_some() {
                return Err(err_at(name.span(), "the FROM topic filter takes no arguments"));
            }
            if let Some(a) = alias {
                return Err(err_at(a.span(), "the FROM topic filter takes no alias"));
            }
            let text = match name.0.as_slice() {
                [ObjectNamePart::Identifier(id)] => id.value.clone(),
                parts => parts.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("."),
            };
            let single_quoted_hint = name.0.len() != 1 || !matches!(&name.0[0], ObjectNamePart::Identifier(Ident { quote_style: Some('"'), .. }));
            TopicFilter::parse(&text).map_err(|m| {
                let mut e = err_at(name.span(), format!("invalid topic filter `{text}`: {m}"));
                if single_quoted_hint {
                    e.hint = Some("write the topic filter in double quotes: FROM \"/sys/+/+/thing/event/property/post\"".into());
                }
                e
            })
        }
        other => Err(err_at(other.span(), "FROM takes a topic filter in double quotes, e.g. FROM \"/sys/+/+/thing/event/property/post\"")),
    }
}

pub(super) fn select_item(item: &AstItem) -> PResult<SelectItem> {
    match item {
        AstItem::Wildcard(_) => Ok(SelectItem::Star),
        AstItem::QualifiedWildcard(_, _) => Err(err_at(item.span(), "`x.*` is not supported; select `*` or name the fields")),
        AstItem::ExprWithAlias { expr, alias } => Ok(SelectItem::Named { name: alias.value.clone(), expr: compile(expr)? }),
        AstItem::UnnamedExpr(e) => {
            let compiled = compile(e)?;
            if let Expr::Call(f, _) = &compiled {
                if f.flattens {
                    return Ok(SelectItem::Flatten(compiled));
                }
            }
            let name = match &compiled {
                Expr::Field(path) => match path.last() {
                    Some(Seg::Key(k)) => k.clone(),
                    _ => e.to_string().trim_matches('"').to_string(),
                },
                _ => e.to_string(),
            };
            Ok(SelectItem::Named { name, expr: compiled })
        }
        #[allow(unreachable_patterns)]
        other => Err(err_at(other.span(), "unsupported select item")),
    }
}
