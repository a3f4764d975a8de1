//! `FOREACH <array> [AS x] [DO <items>] [INCASE <cond>] FROM "…" [WHERE …]`: the statement is
//! cut into its clauses (each a blanked copy of the SQL, so positions stay those of the original
//! text), the array and INCASE are compiled, and the DO items parsed for the select list.

use sqlparser::ast::{SelectItem as AstItem, Spanned};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

use super::bind::bind_item;
use super::compile::{compile, parser_error};
use super::types::{err_at, Foreach, PResult, SqlError};

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
pub(super) struct ForeachParts {
    /// `SELECT*` in place of `FOREACH`, the FOREACH…FROM part blanked: FROM and WHERE.
    pub(super) main: String,
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
pub(super) fn foreach_parts(sql: &str) -> PResult<Option<ForeachParts>> {
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
pub(super) fn compile_foreach(parts: &ForeachParts) -> PResult<(Foreach, Option<Vec<AstItem>>)> {
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
