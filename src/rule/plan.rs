//! Planning: a parsed SQL statement becomes a topic filter, a select list and a WHERE
//! expression, with names and functions bound. Every error carries its SQL position.
//!
//! `types` holds what planning produces; `compile` turns expressions into the evaluation tree;
//! `select` reads FROM and the select list; `foreach` cuts a `FOREACH` statement into its
//! clauses; `bind` binds the `FOREACH` alias.

use sqlparser::ast::{GroupByExpr, SelectItem as AstItem, SetExpr, Spanned, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

mod bind;
mod compile;
mod foreach;
mod select;
mod types;
mod window;

use bind::bind_item_in;
use compile::parser_error;
use foreach::{compile_foreach, foreach_parts};
use select::{from_filter, select_item};
use types::err_at;
use window::{no_aggregate, plan_window};

fn err_msg(message: String, hint: &str) -> SqlError {
    SqlError { line: 1, col: 1, message, hint: Some(hint.into()) }
}

pub use compile::compile;
pub use types::{AggCall, AnalyticCall, Foreach, Plan, SelectItem, SqlError, WindowSpec, Windowed};

/// Compiles a scalar expression written outside the SQL (a rule's `event_time`).
pub fn expression(text: &str) -> Result<crate::rule::expr::Expr, SqlError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(|e| parser_error(text, &e.to_string()))?;
    let e = parser.parse_expr().map_err(|e| parser_error(text, &e.to_string()))?;
    let t = parser.peek_token();
    if t.token != sqlparser::tokenizer::Token::EOF {
        return Err(err_at(t.span, format!("unexpected `{}` after the expression", t.token)));
    }
    let mut e = compile(&e)?;
    no_aggregate(&mut e, |k| err_msg(format!("{}() is an aggregate: an event time is one record's", k.name()), "use a field, e.g. items.temp.time"))?;
    Ok(e)
}

/// Parses and plans one rule query: `SELECT … FROM "…" [WHERE …]`, or EMQX's
/// `FOREACH <array> [AS x] [DO <items>] [INCASE <cond>] FROM "…" [WHERE …]`.
pub fn plan(sql: &str) -> Result<Plan, Vec<SqlError>> {
    let mut errors = Vec::new();
    let mut foreach = None;
    let mut do_items: Option<Vec<AstItem>> = None;
    let rewritten;
    let mut text = sql;
    match foreach_parts(sql) {
        Ok(None) => {}
        Err(e) => return Err(vec![e]),
        Ok(Some(parts)) => {
            match compile_foreach(&parts) {
                Ok((f, items)) => {
                    foreach = Some(f);
                    do_items = items;
                }
                Err(e) => errors.push(e),
            }
            rewritten = parts.main;
            text = &rewritten;
        }
    }
    let stmts = Parser::parse_sql(&GenericDialect {}, text).map_err(|e| {
        errors.push(parser_error(text, &e.to_string()));
        std::mem::take(&mut errors)
    })?;
    let stmt = match stmts.as_slice() {
        [one] => one,
        [] => return Err(vec![SqlError { line: 1, col: 1, message: "empty SQL: expected SELECT … FROM \"topic\"".into(), hint: None }]),
        [_, second, ..] => return Err(vec![err_at(second.span(), "only one statement is allowed in a rule")]),
    };
    let query = match stmt {
        Statement::Query(q) => q,
        other => return Err(vec![err_at(other.span(), "a rule must be a SELECT statement")]),
    };
    if query.with.is_some() {
        errors.push(err_at(query.span(), "WITH is not supported in rules"));
    }
    if let Some(o) = &query.order_by {
        errors.push(err_at(o.span(), "ORDER BY is not supported in rules (each message is processed on its own)"));
    }
    if let Some(l) = &query.limit_clause {
        errors.push(err_at(l.span(), "LIMIT is not supported in rules"));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(s) => s,
        other => return Err(vec![err_at(other.span(), "a rule must be a single SELECT (no UNION, VALUES …)")]),
    };
    let group_by: &[sqlparser::ast::Expr] = match &select.group_by {
        GroupByExpr::Expressions(g, _) => g,
        GroupByExpr::All(_) => {
            errors.push(err_at(select.span(), "GROUP BY ALL is not supported: name the keys and a window"));
            &[]
        }
    };
    if let (Some(h), true) = (&select.having, group_by.is_empty()) {
        let mut e = err_at(h.span(), "HAVING needs GROUP BY with a window");
        e.hint = Some("for example GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60) HAVING count(*) >= 3".into());
        errors.push(e);
    }
    if select.distinct.is_some() {
        errors.push(err_at(select.span(), "DISTINCT is not supported in rules"));
    }

    let filter = match from_filter(select) {
        Ok(f) => Some(f),
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let mut items = Vec::new();
    let mut names: Vec<(String, Span)> = Vec::new();
    // FOREACH: the rewritten statement's `SELECT*` is a placeholder; the DO items are the list.
    let projection: &[AstItem] = match (&foreach, &do_items) {
        (Some(_), Some(d)) => d,
        (Some(_), None) => &[],
        (None, _) => &select.projection,
    };
    let alias = foreach.as_ref().map(|f: &Foreach| f.alias.clone());
    for item in projection {
        match select_item(item).map(|it| bind_item_in(it, alias.as_deref())) {
            Ok(it) => {
                if let SelectItem::Named { name, .. } = &it {
                    let span = item.span();
                    if names.iter().any(|(n, _)| n == name) {
                        let mut e = err_at(span, format!("duplicate output field `{name}`"));
                        e.hint = Some("give one of them another name with AS".into());
                        errors.push(e);
                    }
                    names.push((name.clone(), span));
                }
                items.push(it);
            }
            Err(e) => errors.push(e),
        }
    }

    let where_ = match &select.selection {
        Some(w) => match compile(w) {
            Ok(mut e) => {
                if let Err(err) = no_aggregate(&mut e, |k| err_msg(format!("{}() is an aggregate: it cannot be in WHERE", k.name()), "filter windows with HAVING")) {
                    errors.push(err);
                }
                Some(e)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };

    let mut window = None;
    if !group_by.is_empty() {
        if foreach.is_some() {
            errors.push(err_at(group_by[0].span(), "FOREACH rules cannot have GROUP BY"));
        }
        match plan_window(group_by, select.having.as_ref(), &mut items, select.span()) {
            Ok(w) => window = Some(w),
            Err(e) => errors.extend(e),
        }
    } else {
        for item in &mut items {
            if let SelectItem::Named { expr, .. } | SelectItem::Flatten(expr) = item {
                if let Err(e) = no_aggregate(expr, |k| err_msg(format!("{}() is an aggregate: it needs GROUP BY with a window", k.name()), "for example GROUP BY deviceName(), TUMBLINGWINDOW(ss, 60)"))
                {
                    errors.push(e);
                }
            }
        }
    }

    // Analytic calls: slots of a rule without a window, computed before WHERE.
    let mut analytics = Vec::new();
    let mut where_ = where_;
    let mut foreach = foreach;
    {
        let blocked = if window.is_some() {
            Some("analytic functions are not supported in windowed rules yet")
        } else if foreach.is_some() {
            Some("analytic functions are not supported in FOREACH rules")
        } else {
            None
        };
        let mut exprs: Vec<&mut crate::rule::expr::Expr> = Vec::new();
        for item in &mut items {
            if let SelectItem::Named { expr, .. } | SelectItem::Flatten(expr) = item {
                exprs.push(expr);
            }
        }
        if let Some(w) = &mut where_ {
            exprs.push(w);
        }
        let mut fe: Vec<&mut crate::rule::expr::Expr> = Vec::new();
        if let Some(f) = &mut foreach {
            fe.push(&mut f.array);
            if let Some(i) = &mut f.incase {
                fe.push(i);
            }
        }

        for e in exprs.into_iter().chain(fe) {
            match blocked {
                Some(why) => {
                    if let Some(span) = window::first_analytic(e) {
                        errors.push(err_at(span, why));
                    }
                }
                None => {
                    if let Err(err) = window::lift_analytics(e, &mut analytics) {
                        errors.push(err);
                    }
                }
            }
        }
    }

    match filter {
        Some(filter) if errors.is_empty() => Ok(Plan { filter, select: items, where_, foreach, window, analytics }),
        _ => {
            errors.sort_by_key(|e| (e.line, e.col));
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::ctx::Ctx;
    use crate::rule::expr::Expr;

    fn err(sql: &str) -> SqlError {
        plan(sql).unwrap_err().remove(0)
    }

    #[test]
    fn plans_a_property_rule() {
        let p = plan("SELECT deviceName() AS dn, items.temp.value AS temp, * FROM \"/sys/+/+/thing/event/property/post\" WHERE items.temp.value > 38").unwrap();
        assert_eq!(p.filter.as_str(), "/sys/+/+/thing/event/property/post");
        assert_eq!(p.output_names(), vec!["dn", "temp"]);
        assert!(p.dynamic_fields());
        assert!(p.reads_record());
    }

    #[test]
    fn names_fields_by_last_key_and_calls_by_text() {
        let p = plan("SELECT items.Power.value, \"devices[0].deviceName\", deviceName() FROM \"t\"").unwrap();
        assert_eq!(p.output_names(), vec!["value", "deviceName", "deviceName()"]);
    }

    #[test]
    fn unknown_function_has_a_hint() {
        let e = err("SELECT devicename() FROM \"t\"");
        assert_eq!((e.line, e.col), (1, 8));
        assert_eq!(e.message, "unknown function devicename");
        assert_eq!(e.hint.as_deref(), Some("did you mean deviceName?"));
    }

    #[test]
    fn parse_errors_are_positioned() {
        let e = err("SELECT a FROM \"t\" WHERE");
        assert_eq!(e.message, "expected an expression, found end of SQL");
        let e = err("SELECT a\nFROM \"t\"\nWHERE a = 'x");
        assert_eq!((e.line, e.col), (3, 11));
        assert_eq!(e.message, "Unterminated string literal");
    }

    /// Evaluates a FOREACH plan on `payload`: each kept element's DO values (or the element).
    fn foreach(sql: &str, payload: &str) -> Result<Vec<serde_json::Value>, String> {
        use crate::message::Message;
        use crate::rule::expr::Env;
        use crate::topic::TopicInfo;
        let p = plan(sql).map_err(|e| format!("{e:?}"))?;
        let each = p.foreach.as_ref().ok_or("not a FOREACH")?;
        let msg = Message::new("t/1", payload.as_bytes().to_vec());
        let record = crate::doc::Node::parse(&msg.payload).ok();
        let info = TopicInfo::parse(&msg.topic);
        let env = Env::default();
        let ctx = Ctx { msg: &msg, info: &info, record: record.as_ref(), now_ms: 0, env: &env, item: None, window: None };
        if let Some(w) = &p.where_ {
            if w.eval(&ctx).map_err(|e| e.0)?.truth()? != Some(true) {
                return Ok(Vec::new());
            }
        }
        let mut out = Vec::new();
        for el in &each.elements(&ctx).map_err(|e| e.0)? {
            let ictx = ctx.with_item(el);
            if !each.keep(&ictx).map_err(|e| e.0)? {
                continue;
            }
            if !each.has_do {
                out.push(el.to_json());
                continue;
            }
            let mut m = serde_json::Map::new();
            for item in &p.select {
                match item {
                    SelectItem::Named { name, expr } => {
                        m.insert(name.clone(), expr.eval(&ictx).map_err(|e| e.0)?.to_json());
                    }
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
            out.push(serde_json::Value::Object(m));
        }
        Ok(out)
    }

    #[test]
    fn foreach_emits_one_output_per_kept_element() {
        let payload = r#"{"time":"2020-04-24","sensors":[{"name":"a","idx":0},{"name":"b","idx":1},{"name":"c","idx":2}],"n":[1,2,3]}"#;
        let got = foreach("FOREACH sensors AS e DO e.name AS name, e.idx AS idx, time INCASE e.idx >= 1 FROM \"t/#\"", payload).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"name":"b","idx":1,"time":"2020-04-24"},{"name":"c","idx":2,"time":"2020-04-24"}]"#);
        // Without AS the element is `item`; without DO it is the output itself.
        let got = foreach("foreach sensors incase item.idx <> 1 from \"t/#\"", payload).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"name":"a","idx":0},{"name":"c","idx":2}]"#);
        let got = foreach("FOREACH n DO item * 10 AS x, item AS v FROM \"t/#\" WHERE time = '2020-04-24'", payload).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"x":10,"v":1},{"x":20,"v":2},{"x":30,"v":3}]"#);
        // WHERE filters the message before iterating.
        assert!(foreach("FOREACH n FROM \"t/#\" WHERE time = 'never'", payload).unwrap().is_empty());
        // Any array expression; a missing field gives no element; a non-array is an error.
        let got = foreach("FOREACH [1, 'two', split('a/b', '/')] AS x DO typeof(x) AS t FROM \"t/#\"", payload).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"t":"int"},{"t":"string"},{"t":"array"}]"#);
        assert!(foreach("FOREACH missing FROM \"t/#\"", payload).unwrap().is_empty());
        assert_eq!(foreach("FOREACH time FROM \"t/#\"", payload).unwrap_err(), "FOREACH needs an array, got string \"2020-04-24\"");
        assert_eq!(foreach("FOREACH n INCASE 'maybe' FROM \"t/#\"", payload).unwrap_err(), "INCASE: expected a boolean, got string \"maybe\"");
        // The alias shadows a payload field of the same name; nested paths read into elements.
        let got = foreach("FOREACH json_decode('[{\"a\":{\"b\":[5]}}]') AS time DO time.a.b[0] AS v, \"time.a\" AS o FROM \"t/#\"", payload).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"v":5,"o":{"b":[5]}}]"#);
        // Keywords inside strings, quoted names and brackets are not clauses.
        let got = foreach("FOREACH [(incase), 2] AS \"DO\" DO \"DO\" AS v FROM \"t/#\"", r#"{"incase":"from"}"#).unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"v":"from"},{"v":2}]"#);
        let got = foreach("FOREACH [' DO ', 'INCASE'] AS x DO concat(x, ' FROM ') AS v FROM \"t/#\"", "{}").unwrap();
        assert_eq!(serde_json::to_string(&got).unwrap(), r#"[{"v":" DO  FROM "},{"v":"INCASE FROM "}]"#);
    }

    #[test]
    fn foreach_plans_like_select() {
        let p = plan("FOREACH sensors AS s DO s.name, s.idx AS i FROM \"t/#\"").unwrap();
        assert_eq!(p.output_names(), vec!["name", "i"]);
        assert!(!p.dynamic_fields());
        assert!(p.reads_record());
        let p = plan("FOREACH [1, 2] FROM \"t/#\"").unwrap();
        assert!(p.dynamic_fields(), "without DO the outputs are the elements");
        assert!(!p.reads_record());
        assert!(p.select.is_empty());
        assert_eq!(p.foreach.as_ref().map(|f| f.alias.as_str()), Some("item"));
        // Names are checked among the DO items only.
        assert!(plan("FOREACH sensors DO item.name AS sensors FROM \"t\"").is_ok());
        assert_eq!(err("FOREACH s DO item.a AS x, item.b AS x FROM \"t\"").message, "duplicate output field `x`");
    }

    #[test]
    fn foreach_errors_point_into_the_original_text() {
        let e = err("FOREACH s AS e DO e.name AS n INCASE e.idx >= FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 47, "INCASE: expected an expression, found FROM"));
        let e = err("FOREACH s\nDO devicename(e)\nFROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str(), e.hint.as_deref()), (2, 4, "unknown function devicename", Some("did you mean deviceName?")));
        let e = err("FOREACH DO x FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 9, "FOREACH: expected an expression, found DO"));
        let e = err("FOREACH a, b DO x FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 10, "FOREACH: unexpected `,`"));
        let e = err("FOREACH a INCASE x DO y FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 20, "DO must come before INCASE"));
        let e = err("FOREACH a DO b DO c FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 16, "FOREACH takes one DO"));
        let e = err("FOREACH a DO b");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 1, "FOREACH without FROM \"topic filter\""));
        let e = err("FOREACH a DO b FROM \"a/#/b\"");
        assert_eq!((e.line, e.col), (1, 21));
        assert!(e.message.starts_with("invalid topic filter `a/#/b`"), "{}", e.message);
        let e = err("FOREACH a FROM \"t\" WHERE x = ");
        assert_eq!(e.message, "expected an expression, found end of SQL");
        let e = err("FOREACH a INCASE x = 'unterminated FROM \"t\"");
        assert_eq!(e.message, "Unterminated string literal");
        let e = err("FOREACH * FROM \"t\"");
        assert_eq!((e.line, e.col), (1, 9));
        assert!(e.message.starts_with("FOREACH takes an array expression"), "{}", e.message);
        let e = err("FOREACH a INCASE b AS c FROM \"t\"");
        assert_eq!((e.line, e.col, e.message.as_str()), (1, 20, "INCASE: unexpected `AS`"));
    }

    #[test]
    fn negative_literals_fold_exactly() {
        let lit = |sql: &str| match plan(&format!("SELECT {sql} AS v FROM \"t\"")).unwrap().select.remove(0) {
            SelectItem::Named { expr: Expr::Lit(v), .. } => serde_json::to_string(&v).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(lit("- -9223372036854775808"), "9223372036854775808");
        assert_eq!(lit("-18446744073709551615"), "-1.8446744073709552e+19");
        assert_eq!(lit("-1.5"), "-1.5");
    }

    #[test]
    fn rejects_what_rules_cannot_do() {
        assert_eq!(err("SELECT a FROM \"t\" GROUP BY a").message, "GROUP BY needs a window");
        assert!(err("SELECT a FROM \"a/#/b\"").message.starts_with("invalid topic filter"));
        assert!(err("SELECT a, b AS a FROM \"t\"").message.starts_with("duplicate output field"));
        assert!(err("SELECT lower(1, 2) FROM \"t\"").message.contains("takes 1 argument, got 2"));
        assert!(err("SELECT a FROM t1, t2").message.contains("one topic filter"));
    }
}
