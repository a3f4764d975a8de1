//! Planning: a parsed SQL statement becomes a topic filter, a select list and a WHERE
//! expression, with names and functions bound. Every error carries its SQL position.

use std::borrow::Cow;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, CeilFloorKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectNamePart, SelectItem as AstItem, SetExpr, Spanned, Statement,
    TableFactor, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

use crate::error::EvalError;
use crate::rule::catalog;
use crate::rule::ctx::Ctx;
use crate::rule::expr::{negate, parse_path, ArithOp, CmpOp, Expr, LikePattern, Seg};
use crate::topic::TopicFilter;
use crate::value::{parse_num, Value};

/// An error in the SQL text, at a 1-based line and column of the SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// Line in the SQL text.
    pub line: u64,
    /// Column in the SQL text.
    pub col: u64,
    /// What is wrong.
    pub message: String,
    /// A suggestion.
    pub hint: Option<String>,
}

/// One item of the select list.
#[derive(Debug)]
pub enum SelectItem {
    /// `*`: every field of the record.
    Star,
    /// `expr [AS name]`.
    Named {
        /// The output field name.
        name: String,
        /// The expression.
        expr: Expr,
    },
    /// A flattening function without alias (`thingPropertyFlatMap(…)`): its object's fields are
    /// merged into the output.
    Flatten(Expr),
}

/// A planned rule query.
#[derive(Debug)]
pub struct Plan {
    /// The FROM topic filter.
    pub filter: TopicFilter,
    /// The select list (for `FOREACH`, the `DO` items; empty without `DO`).
    pub select: Vec<SelectItem>,
    /// The WHERE condition.
    pub where_: Option<Expr>,
    /// `FOREACH … [DO …] [INCASE …]`: one output per array element instead of one per record.
    pub foreach: Option<Foreach>,
}

/// The compiled `FOREACH <array> [AS alias] [DO <items>] [INCASE <cond>]` of an EMQX-style rule.
/// WHERE filters the record first; then every element of the array that INCASE keeps makes one
/// output: the `DO` items evaluated with the element bound to `alias`, or without `DO` the
/// element itself.
#[derive(Debug)]
pub struct Foreach {
    /// The array expression.
    pub array: Expr,
    /// The name the element is bound to in `DO` and `INCASE` (`item` without `AS`).
    pub alias: String,
    /// Whether `DO` was given (its items are the plan's select list); without it each element
    /// is the output as it is.
    pub has_do: bool,
    /// The `INCASE` condition on each element.
    pub incase: Option<Expr>,
}

impl Foreach {
    /// The elements of the array for one record: NULL (a missing field) gives none; a value that
    /// is not an array is an error.
    pub fn elements<'a>(&'a self, ctx: &Ctx<'a>) -> Result<Vec<Value<'a>>, EvalError> {
        use serde_json::Value as Json;
        Ok(match self.array.eval(ctx)? {
            Value::Null => Vec::new(),
            Value::Json(Cow::Borrowed(Json::Array(a))) => a.iter().map(Value::from_json).collect(),
            Value::Json(Cow::Owned(Json::Array(a))) => a.into_iter().map(Value::from_owned_json).collect(),
            Value::Doc(crate::doc::Node::Array(a)) => a.iter().map(Value::from_node).collect(),
            other => return Err(EvalError(format!("FOREACH needs an array, got {} {}", other.type_name(), crate::value::quote(&other)))),
        })
    }

    /// Whether INCASE keeps the element bound in `ctx` (always, without INCASE). Like WHERE,
    /// only true keeps it; a value that is not a truth value is an error.
    pub fn keep(&self, ctx: &Ctx<'_>) -> Result<bool, EvalError> {
        match &self.incase {
            None => Ok(true),
            Some(c) => Ok(c.eval(ctx)?.truth().map_err(|e| EvalError(format!("INCASE: {e}")))? == Some(true)),
        }
    }
}

impl Plan {
    /// Whether the output field names are known only at run time (`*`, flattening, `FOREACH`
    /// without `DO`).
    pub fn dynamic_fields(&self) -> bool {
        self.foreach.as_ref().is_some_and(|f| !f.has_do) || self.select.iter().any(|s| !matches!(s, SelectItem::Named { .. }))
    }

    /// Whether evaluating the rule reads the decoded payload.
    pub fn reads_record(&self) -> bool {
        self.where_.as_ref().is_some_and(Expr::reads_record)
            || self.foreach.as_ref().is_some_and(|f| f.array.reads_record() || f.incase.as_ref().is_some_and(Expr::reads_record))
            || self.select.iter().any(|s| match s {
                SelectItem::Star => true,
                SelectItem::Named { expr, .. } | SelectItem::Flatten(expr) => expr.reads_record(),
            })
    }

    /// The fixed output names (those of `Named` items).
    pub fn output_names(&self) -> Vec<&str> {
        self.select
            .iter()
            .filter_map(|s| match s {
                SelectItem::Named { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }
}

type PResult<T> = Result<T, SqlError>;

fn err_at(span: Span, message: impl Into<String>) -> SqlError {
    SqlError { line: span.start.line.max(1), col: span.start.column.max(1), message: message.into(), hint: None }
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
    if let GroupByExpr::Expressions(g, _) = &select.group_by {
        if let Some(first) = g.first() {
            errors.push(err_at(first.span(), "GROUP BY is not supported in rules (each message is processed on its own)"));
        }
    }
    if let Some(h) = &select.having {
        errors.push(err_at(h.span(), "HAVING is not supported in rules"));
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
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };

    match filter {
        Some(filter) if errors.is_empty() => Ok(Plan { filter, select: items, where_, foreach }),
        _ => {
            errors.sort_by_key(|e| (e.line, e.col));
            Err(errors)
        }
    }
}

/// One clause of a `FOREACH` statement: a copy of the whole SQL with everything but the clause
/// blanked out (newlines kept), so that parsing it reports positions in the original text.
struct Part {
    /// The blanked copy.
    text: String,
    /// The keyword that ends the clause (`DO`, `INCASE` or `FROM`) and where it is.
    end: (&'static str, Location),
}

/// The pieces of a `FOREACH` statement, found in its tokens (outside strings, quoted names,
/// comments and brackets).
struct ForeachParts {
    /// `SELECT*` in place of `FOREACH`, the FOREACH…FROM part blanked: FROM and WHERE.
    main: String,
    /// The array expression (with its optional `AS alias`).
    array: Part,
    /// The `DO` items.
    do_: Option<Part>,
    /// The `INCASE` condition.
    incase: Option<Part>,
}

const FOREACH_FORM: &str = "FOREACH <array> [AS x] [DO <items>] [INCASE <condition>] FROM \"<topic filter>\" [WHERE <condition>]";

/// Byte offset of a 1-based line and column (columns in characters).
fn byte_of(sql: &str, at: Location) -> usize {
    let mut off = 0;
    for (n, l) in sql.split_inclusive('\n').enumerate() {
        if n as u64 + 1 == at.line {
            return off + l.char_indices().nth(at.column.saturating_sub(1) as usize).map_or(l.len(), |(i, _)| i);
        }
        off += l.len();
    }
    sql.len()
}

/// `sql` with only the byte range `keep` left, everything else spaces (line breaks kept).
fn blank_except(sql: &str, keep: std::ops::Range<usize>) -> String {
    sql.char_indices().map(|(i, c)| if c == '\n' || c == '\r' || keep.contains(&i) { c } else { ' ' }).collect()
}

/// Splits a `FOREACH` statement into its parts; `None` when the SQL is not one. A SQL that does
/// not tokenize is left to the parser (it reports the same error).
fn foreach_parts(sql: &str) -> PResult<Option<ForeachParts>> {
    let dialect = GenericDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Ok(None);
    };
    let is_word = |t: &Token, kw: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw));
    let mut toks = tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_)));
    let Some(first) = toks.next() else {
        return Ok(None);
    };
    if !is_word(&first.token, "FOREACH") {
        return Ok(None);
    }
    let (mut do_at, mut incase_at, mut from_at): (Option<Span>, Option<Span>, Option<Span>) = (None, None, None);
    let mut depth = 0i64;
    for t in toks {
        match &t.token {
            Token::LParen | Token::LBracket | Token::LBrace => depth += 1,
            Token::RParen | Token::RBracket | Token::RBrace => depth -= 1,
            tok if depth == 0 && is_word(tok, "FROM") => {
                from_at = Some(t.span);
                break;
            }
            tok if depth == 0 && (is_word(tok, "DO") || is_word(tok, "INCASE")) => {
                let is_do = is_word(tok, "DO");
                if (if is_do { do_at } else { incase_at }).is_some() {
                    return Err(err_at(t.span, format!("FOREACH takes one {}", if is_do { "DO" } else { "INCASE" })));
                }
                if is_do && incase_at.is_some() {
                    let mut e = err_at(t.span, "DO must come before INCASE");
                    e.hint = Some(FOREACH_FORM.into());
                    return Err(e);
                }
                if is_do {
                    do_at = Some(t.span);
                } else {
                    incase_at = Some(t.span);
                }
            }
            _ => {}
        }
    }
    let Some(from) = from_at else {
        let mut e = err_at(first.span, "FOREACH without FROM \"topic filter\"");
        e.hint = Some(FOREACH_FORM.into());
        return Err(e);
    };
    let start = |s: Span| byte_of(sql, s.start);
    let end = |s: Span| byte_of(sql, s.end);
    // Each clause runs from the end of its keyword to the start of the next keyword present.
    let incase_end = ("FROM", from);
    let do_end = incase_at.map_or(incase_end, |s| ("INCASE", s));
    let array_end = do_at.map_or(do_end, |s| ("DO", s));
    let part = |after: Span, until: (&'static str, Span)| Part { text: blank_except(sql, end(after)..start(until.1)), end: (until.0, until.1.start) };
    let mut main = blank_except(sql, start(from)..sql.len());
    // `FOREACH` and `SELECT*` have the same length: positions after it do not move.
    main.replace_range(start(first.span)..end(first.span), "SELECT*");
    Ok(Some(ForeachParts { main, array: part(first.span, array_end), do_: do_at.map(|s| part(s, do_end)), incase: incase_at.map(|s| part(s, incase_end)) }))
}

/// Parses one clause with `f`, which must consume all of it. `what` names the clause in errors;
/// an error at the end of the clause points at the keyword after it.
fn parse_part<T>(part: &Part, what: &str, f: impl FnOnce(&mut Parser<'_>) -> Result<T, sqlparser::parser::ParserError>) -> PResult<T> {
    let dialect = GenericDialect {};
    let (kw, at) = part.end;
    let fix = |e: SqlError| {
        if e.message.ends_with(", found end of SQL") {
            let m = e.message.trim_end_matches(", found end of SQL");
            SqlError { line: at.line.max(1), col: at.column.max(1), message: format!("{what}: {m}, found {kw}"), hint: None }
        } else {
            e
        }
    };
    let text = &part.text;
    let mut p = Parser::new(&dialect).try_with_sql(text).map_err(|e| fix(parser_error(text, &e.to_string())))?;
    let v = f(&mut p).map_err(|e| fix(parser_error(text, &e.to_string())))?;
    let next = p.peek_token();
    if next.token != Token::EOF {
        return Err(err_at(next.span, format!("{what}: unexpected `{}`", next.token)));
    }
    Ok(v)
}

/// Compiles the FOREACH array and INCASE, and parses the DO items (compiled with the select
/// list).
fn compile_foreach(parts: &ForeachParts) -> PResult<(Foreach, Option<Vec<AstItem>>)> {
    let item = parse_part(&parts.array, "FOREACH", |p| p.parse_select_item())?;
    let (array, alias) = match &item {
        AstItem::UnnamedExpr(e) => (compile(e)?, "item".to_string()),
        AstItem::ExprWithAlias { expr, alias } => (compile(expr)?, alias.value.clone()),
        other => return Err(err_at(other.span(), "FOREACH takes an array expression, e.g. FOREACH sensors AS s")),
    };
    let do_items = match &parts.do_ {
        None => None,
        Some(part) => Some(parse_part(part, "DO", |p| p.parse_comma_separated(Parser::parse_select_item))?),
    };
    let incase = match &parts.incase {
        None => None,
        Some(part) => {
            let mut c = compile(&parse_part(part, "INCASE", |p| p.parse_expr())?)?;
            bind_item(&mut c, &alias);
            Some(c)
        }
    };
    Ok((Foreach { array, alias, has_do: do_items.is_some(), incase }, do_items))
}

/// Inside `DO`, a select item whose fields start with the FOREACH alias reads the element.
fn bind_item_in(item: SelectItem, alias: Option<&str>) -> SelectItem {
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
fn bind_item(e: &mut Expr, alias: &str) {
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

fn from_filter(select: &ast::Select) -> PResult<TopicFilter> {
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

fn select_item(item: &AstItem) -> PResult<SelectItem> {
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

fn field_from_ident(id: &Ident) -> PResult<Expr> {
    if id.quote_style == Some('"') {
        parse_path(&id.value).map(Expr::Field).map_err(|m| err_at(id.span, m))
    } else {
        Ok(Expr::Field(vec![Seg::Key(id.value.clone())]))
    }
}

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

/// Compiles an AST expression into the evaluation tree.
pub fn compile(e: &ast::Expr) -> PResult<Expr> {
    use ast::Expr as A;
    Ok(match e {
        A::Identifier(id) => field_from_ident(id)?,
        A::CompoundIdentifier(ids) => {
            let mut path = Vec::new();
            for id in ids {
                if id.quote_style == Some('"') {
                    path.extend(parse_path(&id.value).map_err(|m| err_at(id.span, m))?);
                } else {
                    path.push(Seg::Key(id.value.clone()));
                }
            }
            Expr::Field(path)
        }
        A::CompoundFieldAccess { root, access_chain } => {
            let mut path = match compile(root)? {
                Expr::Field(p) => p,
                _ => return Err(err_at(root.span(), "field access needs a field name on the left")),
            };
            for access in access_chain {
                match access {
                    ast::AccessExpr::Dot(A::Identifier(id)) => path.push(Seg::Key(id.value.clone())),
                    ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => match index {
                        A::Value(v) => match &v.value {
                            ast::Value::Number(n, _) => path.push(Seg::Index(n.parse().map_err(|_| err_at(v.span, format!("array index `{n}` must be a non-negative integer")))?)),
                            ast::Value::SingleQuotedString(s) => path.push(Seg::Key(s.clone())),
                            _ => return Err(err_at(index.span(), "an index must be a number or a 'key'")),
                        },
                        other => return Err(err_at(other.span(), "only literal indexes are supported (use nth() for computed ones)")),
                    },
                    other => return Err(err_at(e.span(), format!("unsupported field access `{other}`"))),
                }
            }
            Expr::Field(path)
        }
        A::Value(v) => Expr::Lit(literal(v)?),
        A::Nested(inner) => compile(inner)?,
        A::UnaryOp { op, expr } => match op {
            UnaryOperator::Minus => match compile(expr)? {
                // Folded exactly: `-9223372036854775808` is i64::MIN, `- -9223372036854775808` 2^63.
                Expr::Lit(v @ (Value::Int(_) | Value::UInt(_) | Value::Float(_))) => Expr::Lit(negate(v).map_err(|m| err_at(e.span(), m.0))?),
                other => Expr::Neg(b(other)),
            },
            UnaryOperator::Plus => compile(expr)?,
            UnaryOperator::Not => Expr::Not(b(compile(expr)?)),
            other => return Err(err_at(e.span(), format!("unsupported operator `{other}`"))),
        },
        A::BinaryOp { left, op, right } => {
            let (l, r) = (b(compile(left)?), b(compile(right)?));
            match op {
                BinaryOperator::Plus => Expr::Arith(ArithOp::Add, l, r),
                BinaryOperator::Minus => Expr::Arith(ArithOp::Sub, l, r),
                BinaryOperator::Multiply => Expr::Arith(ArithOp::Mul, l, r),
                BinaryOperator::Divide => Expr::Arith(ArithOp::Div, l, r),
                BinaryOperator::Modulo => Expr::Arith(ArithOp::Mod, l, r),
                BinaryOperator::Eq => Expr::Cmp(CmpOp::Eq, l, r),
                BinaryOperator::NotEq => Expr::Cmp(CmpOp::NotEq, l, r),
                BinaryOperator::Lt => Expr::Cmp(CmpOp::Lt, l, r),
                BinaryOperator::LtEq => Expr::Cmp(CmpOp::LtEq, l, r),
                BinaryOperator::Gt => Expr::Cmp(CmpOp::Gt, l, r),
                BinaryOperator::GtEq => Expr::Cmp(CmpOp::GtEq, l, r),
                BinaryOperator::And => Expr::And(l, r),
                BinaryOperator::Or => Expr::Or(l, r),
                BinaryOperator::StringConcat => Expr::Concat(l, r),
                other => return Err(err_at(e.span(), format!("unsupported operator `{other}`"))),
            }
        }
        A::IsNull(x) => Expr::IsNull(b(compile(x)?), false),
        A::IsNotNull(x) => Expr::IsNull(b(compile(x)?), true),
        A::IsTrue(x) => Expr::IsBool(b(compile(x)?), true, false),
        A::IsFalse(x) => Expr::IsBool(b(compile(x)?), false, false),
        A::IsNotTrue(x) => Expr::IsBool(b(compile(x)?), true, true),
        A::IsNotFalse(x) => Expr::IsBool(b(compile(x)?), false, true),
        A::Array(ast::Array { elem, .. }) => Expr::Array(elem.iter().map(compile).collect::<PResult<_>>()?),
        A::In { expr, target: ast::InTarget::List(list), negated, .. } => Expr::InList(b(compile(expr)?), list.iter().map(compile).collect::<PResult<_>>()?, *negated),
        A::Between { expr, negated, low, high } => Expr::Between(b(compile(expr)?), b(compile(low)?), b(compile(high)?), *negated),
        A::Like { negated, any, expr, pattern, escape_char } | A::ILike { negated, any, expr, pattern, escape_char } => {
            let ci = matches!(e, A::ILike { .. });
            if *any {
                return Err(err_at(e.span(), "LIKE ANY is not supported"));
            }
            let escape = match escape_char.as_deref() {
                None => None,
                Some(A::Value(v)) => match &v.value {
                    ast::Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
                    _ => return Err(err_at(v.span, "ESCAPE takes one character in single quotes")),
                },
                Some(other) => return Err(err_at(other.span(), "ESCAPE takes one character in single quotes")),
            };
            let subject = b(compile(expr)?);
            match compile(pattern)? {
                Expr::Lit(Value::Str(p)) => Expr::Like(subject, LikePattern::new(&p, escape, ci), *negated),
                other => Expr::LikeDyn(subject, b(other), *negated, ci),
            }
        }
        A::Case { operand, conditions, else_result, .. } => Expr::Case(
            operand.as_deref().map(compile).transpose()?.map(b),
            conditions.iter().map(|w| Ok((compile(&w.condition)?, compile(&w.result)?))).collect::<PResult<_>>()?,
            else_result.as_deref().map(compile).transpose()?.map(b),
        ),
        A::Function(f) => function(f)?,
        A::Floor { expr, field } | A::Ceil { expr, field } => {
            let name = if matches!(e, A::Floor { .. }) { "floor" } else { "ceil" };
            if let CeilFloorKind::Scale(s) = field {
                return Err(err_at(s.span, format!("{name}() takes one argument")));
            }
            if let CeilFloorKind::DateTimeField(f) = field {
                if !matches!(f, ast::DateTimeField::NoDateTime) {
                    return Err(err_at(e.span(), format!("{name}(x TO …) is not supported")));
                }
            }
            call(name, e.span(), vec![compile(expr)?])?
        }
        A::Substring { expr, substring_from, substring_for, special, .. } => {
            if !special && (substring_from.is_some() || substring_for.is_some()) {
                let mut err = err_at(e.span(), "SUBSTRING(… FROM … FOR …) is not supported");
                err.hint = Some("use substring(str, start[, end]) with 0-based [start, end)".into());
                return Err(err);
            }
            let mut args = vec![compile(expr)?];
            if let Some(f) = substring_from {
                args.push(compile(f)?);
            }
            if let Some(f) = substring_for {
                args.push(compile(f)?);
            }
            call("substring", e.span(), args)?
        }
        A::Trim { trim_where, trim_what, expr, trim_characters } => {
            if trim_where.is_some() || trim_what.is_some() || trim_characters.is_some() {
                return Err(err_at(e.span(), "only trim(str) is supported"));
            }
            call("trim", e.span(), vec![compile(expr)?])?
        }
        A::Cast { kind, expr, data_type, format } => {
            if format.is_some() || !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                return Err(err_at(e.span(), "only CAST(x AS type) is supported"));
            }
            let f = match data_type {
                DataType::Int(_) | DataType::Integer(_) | DataType::BigInt(_) | DataType::SmallInt(_) | DataType::TinyInt(_) | DataType::Int64 | DataType::Int32 => "int",
                DataType::Float(_) | DataType::Double(_) | DataType::DoublePrecision | DataType::Real | DataType::Float64 | DataType::Decimal(_) | DataType::Numeric(_) => "float",
                DataType::String(_) | DataType::Text | DataType::Varchar(_) | DataType::Char(_) => "string",
                DataType::Boolean | DataType::Bool => "bool",
                other => return Err(err_at(e.span(), format!("cannot CAST to {other}; use int, float, string or bool"))),
            };
            call(f, e.span(), vec![compile(expr)?])?
        }
        other => return Err(err_at(other.span(), format!("unsupported expression `{other}`"))),
    })
}

fn literal(v: &ast::ValueWithSpan) -> PResult<Value<'static>> {
    Ok(match &v.value {
        ast::Value::Number(n, _) => parse_num(n).ok_or_else(|| err_at(v.span, format!("bad number `{n}`")))?.into_value(),
        ast::Value::SingleQuotedString(s) => Value::Str(Cow::Owned(s.clone())),
        ast::Value::Boolean(x) => Value::Bool(*x),
        ast::Value::Null => Value::Null,
        other => return Err(err_at(v.span, format!("unsupported literal `{other}`; strings use 'single quotes'"))),
    })
}

fn function(f: &ast::Function) -> PResult<Expr> {
    let name_span = f.name.span();
    let name = match f.name.0.as_slice() {
        [ObjectNamePart::Identifier(id)] => id.value.as_str(),
        _ => return Err(err_at(name_span, format!("unknown function {}", f.name))),
    };
    if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
        return Err(err_at(name_span, format!("{name}(): window and aggregate clauses are not supported")));
    }
    let args = match &f.args {
        // `user`, `current_user` … parse as argument-less functions: they are field names here.
        FunctionArguments::None => return Ok(Expr::Field(vec![Seg::Key(name.to_string())])),
        FunctionArguments::Subquery(q) => return Err(err_at(q.span(), "subqueries are not supported")),
        FunctionArguments::List(l) => {
            if let Some(c) = l.clauses.first() {
                return Err(err_at(name_span, format!("{name}(): unsupported clause `{c}`")));
            }
            let mut out = Vec::with_capacity(l.args.len());
            for a in &l.args {
                out.push(match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => compile(x)?,
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Expr::Payload,
                    other => return Err(err_at(other.span(), format!("{name}(): unsupported argument `{other}`"))),
                });
            }
            out
        }
    };
    call(name, name_span, args)
}

fn call(name: &str, span: Span, args: Vec<Expr>) -> PResult<Expr> {
    let Some(def) = catalog::get(name) else {
        let mut e = err_at(span, format!("unknown function {name}"));
        e.hint = catalog::suggest(name).map(|s| format!("did you mean {s}?"));
        return Err(e);
    };
    if args.len() < def.min_args || args.len() > def.max_args {
        let mut e = err_at(span, format!("{name}() takes {}, got {}", def.arity_text(), args.len()));
        e.hint = Some(format!("signature: {}", def.signature));
        return Err(e);
    }
    Ok(Expr::Call(def, args))
}

/// Turns sqlparser's error text into a positioned, readable error.
fn parser_error(sql: &str, raw: &str) -> SqlError {
    let text = raw.trim_start_matches("sql parser error: ");
    let (msg, line, col) = match text.rfind(" at Line: ") {
        Some(i) => {
            let loc = &text[i + " at Line: ".len()..];
            let mut it = loc.split(", Column: ");
            let line = it.next().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
            let col = it.next().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
            (&text[..i], line, col)
        }
        None => {
            let lines: Vec<&str> = sql.lines().collect();
            let line = lines.len().max(1) as u64;
            let col = lines.last().map_or(1, |l| l.chars().count() as u64 + 1);
            (text, line, col)
        }
    };
    let msg = msg.replace("Expected: ", "expected ").replace(", found: EOF", ", found end of SQL").replace(", found: ", ", found ");
    SqlError { line, col, message: msg, hint: None }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ctx = Ctx { msg: &msg, info: &info, record: record.as_ref(), now_ms: 0, env: &env, item: None };
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
        assert!(err("SELECT a FROM \"t\" GROUP BY a").message.starts_with("GROUP BY"));
        assert!(err("SELECT a FROM \"a/#/b\"").message.starts_with("invalid topic filter"));
        assert!(err("SELECT a, b AS a FROM \"t\"").message.starts_with("duplicate output field"));
        assert!(err("SELECT lower(1, 2) FROM \"t\"").message.contains("takes 1 argument, got 2"));
        assert!(err("SELECT a FROM t1, t2").message.contains("one topic filter"));
    }
}
