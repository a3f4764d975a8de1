//! Planning: a parsed SQL statement becomes a topic filter, a select list and a WHERE
//! expression, with names and functions bound. Every error carries its SQL position.

use std::borrow::Cow;

use sqlparser::ast::{
    self, BinaryOperator, CastKind, CeilFloorKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectNamePart, SelectItem as AstItem, SetExpr, Spanned, Statement,
    TableFactor, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

use crate::rule::expr::{parse_path, ArithOp, CmpOp, Expr, LikePattern, Seg};
use crate::rule::registry;
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
    /// The select list.
    pub select: Vec<SelectItem>,
    /// The WHERE condition.
    pub where_: Option<Expr>,
}

impl Plan {
    /// Whether the output field names are known only at run time (`*`, flattening).
    pub fn dynamic_fields(&self) -> bool {
        self.select.iter().any(|s| !matches!(s, SelectItem::Named { .. }))
    }

    /// Whether evaluating the rule reads the decoded payload.
    pub fn reads_record(&self) -> bool {
        self.where_.as_ref().is_some_and(Expr::reads_record)
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

/// Parses and plans one rule query.
pub fn plan(sql: &str) -> Result<Plan, Vec<SqlError>> {
    let stmts = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| vec![parser_error(sql, &e.to_string())])?;
    let stmt = match stmts.as_slice() {
        [one] => one,
        [] => return Err(vec![SqlError { line: 1, col: 1, message: "empty SQL: expected SELECT … FROM \"topic\"".into(), hint: None }]),
        [_, second, ..] => return Err(vec![err_at(second.span(), "only one statement is allowed in a rule")]),
    };
    let query = match stmt {
        Statement::Query(q) => q,
        other => return Err(vec![err_at(other.span(), "a rule must be a SELECT statement")]),
    };
    let mut errors = Vec::new();
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
    for item in &select.projection {
        match select_item(item) {
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
        Some(filter) if errors.is_empty() => Ok(Plan { filter, select: items, where_ }),
        _ => Err(errors),
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
                Expr::Lit(Value::Int(i)) => Expr::Lit(Value::Int(-i)),
                Expr::Lit(Value::Float(f)) => Expr::Lit(Value::Float(-f)),
                Expr::Lit(Value::UInt(u)) if u == 1u64 << 63 => Expr::Lit(Value::Int(i64::MIN)),
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
        A::IsTrue(x) => Expr::Cmp(CmpOp::Eq, b(compile(x)?), b(Expr::Lit(Value::Bool(true)))),
        A::IsFalse(x) => Expr::Cmp(CmpOp::Eq, b(compile(x)?), b(Expr::Lit(Value::Bool(false)))),
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
    let Some(def) = registry::get(name) else {
        let mut e = err_at(span, format!("unknown function {name}"));
        e.hint = registry::suggest(name).map(|s| format!("did you mean {s}?"));
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

    #[test]
    fn rejects_what_rules_cannot_do() {
        assert!(err("SELECT a FROM \"t\" GROUP BY a").message.starts_with("GROUP BY"));
        assert!(err("SELECT a FROM \"a/#/b\"").message.starts_with("invalid topic filter"));
        assert!(err("SELECT a, b AS a FROM \"t\"").message.starts_with("duplicate output field"));
        assert!(err("SELECT lower(1, 2) FROM \"t\"").message.contains("takes 1 argument, got 2"));
        assert!(err("SELECT a FROM t1, t2").message.contains("one topic filter"));
    }
}
