//! Windowed rules: `GROUP BY <keys…>, <WINDOW>(unit, …) [HAVING …]`. The window call becomes a
//! [`WindowSpec`]; the other GROUP BY expressions are the group key; every aggregate call of the
//! select list and HAVING becomes a slot ([`AggCall`]) that the window fills, and every
//! expression outside an aggregate that reads the record (a field, `deviceName()`) becomes an
//! implicit `last_value` slot: it is the window's last record's value, as in eKuiper.

use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Spanned};
use sqlparser::tokenizer::Span;

use super::compile::compile;
use super::types::{err_at, AggCall, AnalyticCall, PResult, SelectItem, SqlError, WindowSpec, Windowed};
use crate::rule::expr::Expr;
use crate::rule::functions::aggregate::AggKind;

/// The window functions GROUP BY takes.
const WINDOWS: [&str; 6] = ["tumblingwindow", "hoppingwindow", "slidingwindow", "sessionwindow", "countwindow", "silencewindow"];

/// Plans `GROUP BY` (and HAVING) of a select whose items are already compiled; `items` are
/// rewritten to read the window's slots.
pub(super) fn plan_window(group_by: &[ast::Expr], having: Option<&ast::Expr>, items: &mut [SelectItem], whole: Span) -> Result<Windowed, Vec<SqlError>> {
    let mut errors = Vec::new();
    let mut spec = None;
    let mut keys = Vec::new();
    let mut windows = 0;
    for g in group_by {
        let call = window_call(g);
        windows += usize::from(call.is_some());
        match call {
            Some(f) => match (windows > 1, window_spec(f)) {
                (true, _) => errors.push(err_at(g.span(), "GROUP BY takes one window")),
                (false, Ok(s)) => spec = Some(s),
                (false, Err(e)) => errors.push(e),
            },
            None => match compile(g) {
                Ok(mut e) => {
                    if e.any(&|x| matches!(x, Expr::Aggregate(..))) {
                        errors.push(err_at(g.span(), "GROUP BY cannot hold an aggregate"));
                    }
                    keys.push(e);
                }
                Err(e) => errors.push(e),
            },
        }
    }
    let Some(spec) = spec else {
        if windows > 0 {
            return Err(errors);
        }
        let mut e = err_at(group_by.first().map_or(whole, Spanned::span), "GROUP BY needs a window");
        e.hint = Some("add one: GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60) (or HOPPINGWINDOW, SLIDINGWINDOW, SESSIONWINDOW, COUNTWINDOW)".into());
        errors.push(e);
        return Err(errors);
    };
    let mut aggs = Vec::new();
    for item in items.iter_mut() {
        match item {
            SelectItem::Star => errors.push(err_at(whole, "SELECT * has no meaning for a window: name the fields and aggregates")),
            SelectItem::Named { expr, .. } | SelectItem::Flatten(expr) => {
                if let Err(e) = lift(expr, &mut aggs) {
                    errors.push(e);
                }
            }
        }
    }
    let having = match having.map(compile) {
        None => None,
        Some(Ok(mut h)) => match lift(&mut h, &mut aggs) {
            Ok(()) => Some(h),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        Some(Err(e)) => {
            errors.push(e);
            None
        }
    };
    if errors.is_empty() {
        Ok(Windowed { spec, keys, aggs, having })
    } else {
        Err(errors)
    }
}

/// The first aggregate call inside `e`, as an error at its position (aggregates in WHERE, or
/// in a rule without a window).
pub(super) fn no_aggregate(e: &mut Expr, message: impl Fn(AggKind) -> SqlError) -> Result<(), SqlError> {
    let mut found = None;
    find_aggregate(e, &mut found);
    match found {
        Some((kind, span)) => {
            let mut err = message(kind);
            err.line = span.start.line.max(1);
            err.col = span.start.column.max(1);
            Err(err)
        }
        None => Ok(()),
    }
}

/// Rewrites the analytic calls of `e` into slots of `calls`.
pub(super) fn lift_analytics(e: &mut Expr, calls: &mut Vec<AnalyticCall>) -> PResult<()> {
    if let Expr::Analytic(kind, args, partition, span) = e {
        let (kind, span) = (*kind, *span);
        for a in args.iter_mut().chain(partition.iter_mut().flatten()) {
            if a.any(&|x| matches!(x, Expr::Analytic(..))) {
                return Err(err_at(span, format!("{}(): an analytic function cannot hold another", kind.name())));
            }
        }
        calls.push(AnalyticCall { kind, args: std::mem::take(args), partition: partition.take() });
        *e = Expr::Agg(calls.len() - 1);
        return Ok(());
    }
    for c in e.children_mut() {
        lift_analytics(c, calls)?;
    }
    Ok(())
}

/// The position of the first analytic call in `e`.
pub(super) fn first_analytic(e: &mut Expr) -> Option<Span> {
    if let Expr::Analytic(_, _, _, span) = e {
        return Some(*span);
    }
    e.children_mut().into_iter().find_map(first_analytic)
}

fn find_aggregate(e: &mut Expr, found: &mut Option<(AggKind, Span)>) {
    if found.is_some() {
        return;
    }
    if let Expr::Aggregate(kind, _, span) = e {
        *found = Some((*kind, *span));
        return;
    }
    for c in e.children_mut() {
        find_aggregate(c, found);
    }
}

/// Rewrites `e` to read window slots: aggregate calls become slots, and so does every
/// record-reading expression outside them (as `last_value`).
fn lift(e: &mut Expr, aggs: &mut Vec<AggCall>) -> PResult<()> {
    if let Expr::Aggregate(kind, args, span) = e {
        let (kind, span) = (*kind, *span);
        for a in args.iter_mut() {
            if a.any(&|x| matches!(x, Expr::Aggregate(..))) {
                return Err(err_at(span, format!("{}(): an aggregate cannot hold another aggregate", kind.name())));
            }
        }
        aggs.push(AggCall { kind, args: std::mem::take(args) });
        *e = Expr::Agg(aggs.len() - 1);
        return Ok(());
    }
    // Functions of the emitted window itself, not of a record.
    let window_bound = |x: &Expr| matches!(x, Expr::Call(f, _) if matches!(f.name, "window_start" | "window_end" | "silence"));
    if let Some(span) = first_analytic(e) {
        return Err(err_at(span, "analytic functions are not supported in windowed rules yet"));
    }
    if !matches!(e, Expr::Lit(_)) && !e.any(&|x| matches!(x, Expr::Aggregate(..)) || window_bound(x)) {
        let taken = std::mem::replace(e, Expr::Agg(aggs.len()));
        aggs.push(AggCall { kind: AggKind::Last, args: vec![taken] });
        return Ok(());
    }
    for c in e.children_mut() {
        lift(c, aggs)?;
    }
    Ok(())
}

fn window_call(e: &ast::Expr) -> Option<&ast::Function> {
    match e {
        ast::Expr::Function(f) => match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] if WINDOWS.contains(&id.value.to_ascii_lowercase().as_str()) => Some(f),
            _ => None,
        },
        _ => None,
    }
}

fn window_spec(f: &ast::Function) -> PResult<WindowSpec> {
    let name = f.name.to_string().to_ascii_uppercase();
    let at = f.name.span();
    let args: Vec<&ast::Expr> = match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Ok(x),
                other => Err(err_at(other.span(), format!("{name}: unexpected argument `{other}`"))),
            })
            .collect::<PResult<_>>()?,
        _ => Vec::new(),
    };
    let usage = match name.as_str() {
        "TUMBLINGWINDOW" => "TUMBLINGWINDOW(unit, size)",
        "HOPPINGWINDOW" => "HOPPINGWINDOW(unit, size, hop)",
        "SLIDINGWINDOW" => "SLIDINGWINDOW(unit, size)",
        "SESSIONWINDOW" => "SESSIONWINDOW(unit, max, timeout)",
        "SILENCEWINDOW" => "SILENCEWINDOW(unit, duration[, COMEBACK])",
        _ => "COUNTWINDOW(n[, hop])",
    };
    let bad = |span: Span, what: String| {
        let mut e = err_at(span, what);
        e.hint = Some(format!("{usage}, with unit one of ms, ss, mi, hh, dd"));
        e
    };
    let count = |x: &ast::Expr| -> PResult<i64> {
        match x {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| bad(x.span(), format!("{name}: `{n}` is not a positive integer"))),
                _ => Err(bad(x.span(), format!("{name}: `{x}` is not a positive integer"))),
            },
            _ => Err(bad(x.span(), format!("{name}: `{x}` is not a positive integer"))),
        }
    };
    if name == "COUNTWINDOW" {
        return match args.as_slice() {
            [n] => Ok(WindowSpec::Count { n: count(n)? as u64, hop: count(n)? as u64 }),
            [n, h] => Ok(WindowSpec::Count { n: count(n)? as u64, hop: count(h)? as u64 }),
            _ => Err(bad(at, format!("{name} takes 1 or 2 arguments, got {}", args.len()))),
        };
    }
    let want = match name.as_str() {
        "TUMBLINGWINDOW" | "SLIDINGWINDOW" => 2,
        "SILENCEWINDOW" if args.len() == 2 => 2,
        _ => 3,
    };
    if args.len() != want {
        return Err(bad(at, format!("{name} takes {want} arguments, got {}", args.len())));
    }
    let unit = match args[0] {
        ast::Expr::Identifier(id) => match id.value.to_ascii_lowercase().as_str() {
            "ms" => 1,
            "ss" => 1_000,
            "mi" => 60_000,
            "hh" => 3_600_000,
            "dd" => 86_400_000,
            other => return Err(bad(args[0].span(), format!("{name}: unknown time unit `{other}`"))),
        },
        other => return Err(bad(other.span(), format!("{name}: the first argument is the time unit, got `{other}`"))),
    };
    let ms = |x: &ast::Expr| -> PResult<i64> { count(x)?.checked_mul(unit).ok_or_else(|| bad(x.span(), format!("{name}: `{x}` is too long"))) };
    Ok(match name.as_str() {
        "TUMBLINGWINDOW" => WindowSpec::Tumbling { size: ms(args[1])? },
        "SLIDINGWINDOW" => WindowSpec::Sliding { size: ms(args[1])? },
        "SILENCEWINDOW" => {
            let comeback = match args.get(2) {
                None => false,
                Some(ast::Expr::Identifier(id)) if id.value.eq_ignore_ascii_case("comeback") => true,
                Some(other) => return Err(bad(other.span(), format!("{name}: the third argument can only be COMEBACK, got `{other}`"))),
            };
            WindowSpec::Silence { duration: ms(args[1])?, comeback }
        }
        "HOPPINGWINDOW" => {
            let (size, hop) = (ms(args[1])?, ms(args[2])?);
            if hop > size {
                return Err(bad(args[2].span(), format!("{name}: the hop ({hop} ms) is longer than the window ({size} ms); records between windows would be lost")));
            }
            WindowSpec::Hopping { size, hop }
        }
        _ => {
            let (max, timeout) = (ms(args[1])?, ms(args[2])?);
            WindowSpec::Session { max, timeout }
        }
    })
}
