//! Flag parsing as Juju's gnuflag does it for hook tools: `--x`, `--x=v`,
//! `-r v`, flags interspersed with positionals, `--` ends flags, booleans
//! taking an optional `=value`, and gnuflag's error messages ("option" is
//! what jujuc commands call a flag).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Bool,
    Value,
    /// A value flag that may be given more than once.
    Multi,
}

/// A flag set: each flag has one canonical name and any aliases.
#[derive(Debug, Default)]
pub struct Spec {
    flags: Vec<(Vec<&'static str>, Kind)>,
}

impl Spec {
    pub fn new() -> Spec {
        Spec::default()
    }
    pub fn flag(mut self, names: &[&'static str], kind: Kind) -> Spec {
        self.flags.push((names.to_vec(), kind));
        self
    }
    /// The `--format` flag every output-producing tool has.
    pub fn format(self) -> Spec {
        self.flag(&["format"], Kind::Value)
    }
    fn find(&self, name: &str) -> Option<(&'static str, Kind)> {
        self.flags
            .iter()
            .find(|(names, _)| names.contains(&name))
            .map(|(names, kind)| (names[0], *kind))
    }
}

/// What was parsed: flag values keyed by canonical name, in order given.
#[derive(Debug, Default)]
pub struct Parsed {
    pub values: BTreeMap<&'static str, Vec<String>>,
    pub bools: BTreeMap<&'static str, bool>,
    pub args: Vec<String>,
    /// Flag values in the order given, with the name used: for -r validation order.
    pub given: Vec<(&'static str, String, String)>,
}

impl Parsed {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
    pub fn on(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
}

pub fn flag_with_minus(name: &str) -> String {
    if name.chars().count() > 1 {
        format!("--{name}")
    } else {
        format!("-{name}")
    }
}

/// Go's strconv.ParseBool.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `args` (without the command name). Errors are gnuflag's messages (exit 2).
pub fn parse(spec: &Spec, args: &[String]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            out.args.extend(args[i..].iter().cloned());
            break;
        }
        if a.len() < 2 || !a.starts_with('-') {
            out.args.push(a.clone());
            continue;
        }
        // (name, inline value) pairs this argument carries.
        let mut items: Vec<(String, Option<String>, bool)> = Vec::new();
        if let Some(long) = a.strip_prefix("--") {
            match long.split_once('=') {
                Some(("", _)) => return Err(format!("empty option in argument {a:?}")),
                Some((n, v)) => items.push((n.to_string(), Some(v.to_string()), true)),
                None => items.push((long.to_string(), None, true)),
            }
        } else {
            // A cluster of single-rune flags; a value flag takes the rest.
            let rest: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < rest.len() {
                let name = rest[j].to_string();
                let tail: String = rest[j + 1..].iter().collect();
                match spec.find(&name) {
                    Some((_, Kind::Value | Kind::Multi)) if !tail.is_empty() => {
                        let v = tail.strip_prefix('=').unwrap_or(&tail).to_string();
                        items.push((name, Some(v), false));
                        break;
                    }
                    Some((_, Kind::Bool)) if tail.starts_with('=') => {
                        items.push((name, Some(tail[1..].to_string()), false));
                        break;
                    }
                    _ => items.push((name, None, false)),
                }
                j += 1;
            }
        }
        for (name, inline, _long) in items {
            let Some((canon, kind)) = spec.find(&name) else {
                return Err(format!(
                    "option provided but not defined: {}",
                    flag_with_minus(&name)
                ));
            };
            match kind {
                Kind::Bool => {
                    let v = inline.unwrap_or_else(|| "true".to_string());
                    let b = parse_bool(&v).ok_or_else(|| {
                        format!(
                            "invalid boolean option {name}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                        )
                    })?;
                    out.bools.insert(canon, b);
                }
                Kind::Value | Kind::Multi => {
                    let v = match inline {
                        Some(v) => v,
                        None if i < args.len() => {
                            i += 1;
                            args[i - 1].clone()
                        }
                        None => {
                            return Err(format!(
                                "option needs an argument: {}",
                                flag_with_minus(&name)
                            ))
                        }
                    };
                    out.given.push((canon, name.clone(), v.clone()));
                    let slot = out.values.entry(canon).or_default();
                    if kind == Kind::Value {
                        slot.clear();
                    }
                    slot.push(v);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn spec() -> Spec {
        Spec::new()
            .format()
            .flag(&["r", "relation"], Kind::Value)
            .flag(&["app", "application"], Kind::Bool)
    }

    #[test]
    fn long_short_interspersed() {
        let p = parse(&spec(), &s(&["db", "--format=json", "-r", "db:1", "--app"])).unwrap();
        assert_eq!(p.args, ["db"]);
        assert_eq!(p.value("format"), Some("json"));
        assert_eq!(p.value("r"), Some("db:1"));
        assert!(p.on("app"));
        let p = parse(&spec(), &s(&["--relation", "7", "-rdb:2"])).unwrap();
        assert_eq!(p.value("r"), Some("db:2"));
    }

    #[test]
    fn booleans_take_values() {
        let p = parse(&spec(), &s(&["--application=False", "x"])).unwrap();
        assert!(!p.on("app"));
        let p = parse(&spec(), &s(&["--app=true"])).unwrap();
        assert!(p.on("app"));
        let e = parse(&spec(), &s(&["--app=maybe"])).unwrap_err();
        assert!(e.starts_with("invalid boolean option app"), "{e}");
    }

    #[test]
    fn double_dash_ends_flags() {
        let p = parse(&spec(), &s(&["--", "--app", "-r"])).unwrap();
        assert_eq!(p.args, ["--app", "-r"]);
        assert!(!p.on("app"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&spec(), &s(&["--xyz"])).unwrap_err(),
            "option provided but not defined: --xyz"
        );
        assert_eq!(
            parse(&spec(), &s(&["-z"])).unwrap_err(),
            "option provided but not defined: -z"
        );
        assert_eq!(
            parse(&spec(), &s(&["-r"])).unwrap_err(),
            "option needs an argument: -r"
        );
    }

    #[test]
    fn lone_dash_is_positional() {
        let p = parse(&spec(), &s(&["-", "pg/0"])).unwrap();
        assert_eq!(p.args, ["-", "pg/0"]);
    }
}
