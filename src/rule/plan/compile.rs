//! Expressions: a SQL expression becomes the evaluation tree, with field paths parsed, literals
//! folded and function calls bound through the catalog (arity checked, unknown names with a
//! suggestion).

use std::borrow::Cow;

use sqlparser::ast::{self, BinaryOperator, CastKind, CeilFloorKind, DataType, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, Spanned, UnaryOperator};
use sqlparser::tokenizer::Span;

use super::types::{err_at, PResult, SqlError};
use crate::rule::catalog;
use crate::rule::expr::{negate, parse_path, ArithOp, CmpOp, Expr, LikePattern, Seg};
use crate::rule::functions::aggregate::AggKind;
use crate::rule::functions::analytic::AnalyticKind;
use crate::value::{parse_num, Value};

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
    let analytic = catalog::get(name).filter(|d| d.analytic).and_then(|d| AnalyticKind::of(d.name));
    let mut partition = None;
    if let (Some(over), Some(_)) = (&f.over, analytic) {
        match over {
            ast::WindowType::WindowSpec(w) if w.window_name.is_none() && w.order_by.is_empty() && w.window_frame.is_none() => {
                partition = Some(w.partition_by.iter().map(compile).collect::<PResult<Vec<_>>>()?);
            }
            _ => return Err(err_at(name_span, format!("{name}(): OVER takes only PARTITION BY …"))),
        }
    } else if f.over.is_some() {
        let mut e = err_at(name_span, format!("{name}(): OVER is for the analytic functions"));
        e.hint = Some("lag, latest, changed and had_changed take OVER (PARTITION BY …)".into());
        return Err(e);
    }
    if f.filter.is_some() || !f.within_group.is_empty() {
        return Err(err_at(name_span, format!("{name}(): FILTER and WITHIN GROUP are not supported")));
    }
    let args = match &f.args {
        // `user`, `current_user` … parse as argument-less functions: they are field names here.
        FunctionArguments::None => return Ok(Expr::Field(vec![Seg::Key(name.to_string())])),
        FunctionArguments::Subquery(q) => return Err(err_at(q.span(), "subqueries are not supported")),
        FunctionArguments::List(l) => {
            if let Some(c) = l.clauses.first() {
                return Err(err_at(name_span, format!("{name}(): unsupported clause `{c}`")));
            }
            let distinct = matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct));
            let mut out = Vec::with_capacity(l.args.len());
            for a in &l.args {
                out.push(match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => compile(x)?,
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Expr::Payload,
                    other => return Err(err_at(other.span(), format!("{name}(): unsupported argument `{other}`"))),
                });
            }
            if distinct {
                return match AggKind::of(name, true) {
                    Some(kind) if kind == AggKind::CountDistinct => Ok(Expr::Aggregate(kind, out, name_span)),
                    _ => Err(err_at(name_span, format!("{name}(): DISTINCT is supported in count(DISTINCT x) only"))),
                };
            }
            out
        }
    };
    match (analytic, call(name, name_span, args)?) {
        (Some(kind), Expr::Call(_, args)) => Ok(Expr::Analytic(kind, args, partition, name_span)),
        (_, e) => Ok(e),
    }
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
    if def.aggregate {
        let kind = AggKind::of(name, false).ok_or_else(|| err_at(span, format!("internal: aggregate {name} has no accumulator")))?;
        // count(*): every record.
        let args = if kind == AggKind::Count && matches!(args.as_slice(), [Expr::Payload]) { Vec::new() } else { args };
        return Ok(Expr::Aggregate(kind, args, span));
    }
    Ok(Expr::Call(def, args))
}

/// Turns sqlparser's error text into a positioned, readable error.
pub(super) fn parser_error(sql: &str, raw: &str) -> SqlError {
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
