//! Reading script replies without trusting their shape: a malformed reply is an error, never a
//! panic.

use hookwire_jobs::Error;
use redis::Value;

pub(crate) fn bad(what: &str) -> Error {
    Error::backend(format!("unexpected reply from Redis: {what}"))
}

pub(crate) fn array(v: Value) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad("expected an array")),
    }
}

pub(crate) fn string(v: &Value) -> Result<String, Error> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad("non-UTF-8 text")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Okay => Ok("OK".to_owned()),
        _ => Err(bad("expected a string")),
    }
}

pub(crate) fn opt_string(v: &Value) -> Result<Option<String>, Error> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        _ => string(v).map(Some),
    }
}

pub(crate) fn int(v: &Value) -> Result<i64, Error> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(_) | Value::SimpleString(_) => {
            string(v)?.parse().map_err(|_| bad("expected an integer"))
        }
        Value::Nil => Ok(0),
        _ => Err(bad("expected an integer")),
    }
}

pub(crate) fn strings(v: Value) -> Result<Vec<String>, Error> {
    array(v)?.iter().map(string).collect()
}

pub(crate) fn u32_of(v: &Value) -> Result<u32, Error> {
    Ok(u32::try_from(int(v)?.max(0)).unwrap_or(u32::MAX))
}

pub(crate) fn u64_of(v: &Value) -> Result<u64, Error> {
    Ok(u64::try_from(int(v)?.max(0)).unwrap_or(0))
}
