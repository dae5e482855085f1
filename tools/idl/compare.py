#!/usr/bin/env python3
"""compare.py - compare thrift/cassandra.thrift with the Thrift classes compiled into Cassandra's jar.

    python3 tools/idl/compare.py thrift/cassandra.thrift jar.json

jar.json is the output of tools/idl/ThriftJarDump.java. Our IDL is parsed here (a parser for the
Thrift IDL subset the file uses: const, enum, struct, exception, service) because thrift's own JSON
generator reduces enum-typed fields to i32. Every struct and exception (field ids, names, types,
requiredness, defaults), every enum (names, values), every method (argument and result/exception
ids, names, types) and the VERSION constant must match. Prints each difference; exits 1 if any.
"""
import json
import re
import sys

TOKEN = re.compile(r'\s*(?:(/\*.*?\*/|//[^\n]*|#[^\n]*)|("(?:[^"\\]|\\.)*")|([A-Za-z_][\w.]*)|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(\S))', re.S)
BASE = {"bool", "byte", "i16", "i32", "i64", "double", "string", "binary"}


def tokenize(text):
    pos, out = 0, []
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            break
        pos = m.end()
        if m.group(1) is not None:
            continue
        for kind, g in (("str", 2), ("id", 3), ("num", 4), ("sym", 5)):
            if m.group(g) is not None:
                out.append((kind, m.group(g)))
                break
    return out


class Parser:
    def __init__(self, text):
        self.t = tokenize(text)
        self.i = 0
        self.enums, self.structs, self.methods, self.consts = {}, {}, {}, {}

    def peek(self):
        return self.t[self.i][1] if self.i < len(self.t) else None

    def next(self):
        tok = self.t[self.i]
        self.i += 1
        return tok[1]

    def expect(self, s):
        got = self.next()
        if got != s:
            raise SyntaxError(f"expected {s!r}, got {got!r} near token {self.i}")

    def skip_sep(self):
        while self.peek() in (",", ";"):
            self.next()

    def type_(self):
        name = self.next()
        if name in ("list", "set"):
            self.expect("<")
            inner = self.type_()
            self.expect(">")
            return f"{name}<{inner}>"
        if name == "map":
            self.expect("<")
            k = self.type_()
            self.expect(",")
            v = self.type_()
            self.expect(">")
            return f"map<{k},{v}>"
        return name if name in BASE else "named:" + name

    def value(self):
        kind, v = self.t[self.i]
        self.i += 1
        if kind == "str":
            return v[1:-1]
        if kind == "num":
            return float(v)
        return v  # an identifier such as ConsistencyLevel.ONE

    def fields(self, closer):
        out = []
        while self.peek() != closer:
            fid = int(self.next())
            self.expect(":")
            req = "default"
            if self.peek() in ("required", "optional"):
                req = self.next()
            ftype = self.type_()
            name = self.next()
            default = None
            if self.peek() == "=":
                self.next()
                default = self.value()
            out.append({"id": fid, "name": name, "type": ftype, "req": req, "default": default})
            self.skip_sep()
        return out

    def parse(self):
        while self.i < len(self.t):
            word = self.next()
            if word == "namespace":
                self.next(); self.next()
            elif word == "const":
                self.type_()
                name = self.next()
                self.expect("=")
                self.consts[name] = self.value()
            elif word == "enum":
                name = self.next()
                self.expect("{")
                members, nextval = {}, 0
                while self.peek() != "}":
                    m = self.next()
                    if self.peek() == "=":
                        self.next()
                        nextval = int(self.next())
                    members[m] = nextval
                    nextval += 1
                    self.skip_sep()
                self.expect("}")
                self.enums[name] = members
            elif word in ("struct", "exception"):
                name = self.next()
                self.expect("{")
                self.structs[name] = {"exception": word == "exception", "fields": self.fields("}")}
                self.expect("}")
            elif word == "service":
                self.next()
                self.expect("{")
                while self.peek() != "}":
                    rtype = self.type_()
                    name = self.next()
                    self.expect("(")
                    args = self.fields(")")
                    self.expect(")")
                    excs = []
                    if self.peek() == "throws":
                        self.next()
                        self.expect("(")
                        excs = self.fields(")")
                        self.expect(")")
                    result = ([] if rtype == "named:void" else
                              [{"id": 0, "name": "success", "type": rtype, "req": "default", "default": None}])
                    self.methods[name] = {"args": args, "result": result + excs}
                    self.skip_sep()
                self.expect("}")
            else:
                raise SyntaxError(f"unexpected {word!r}")
        return self


def resolve(t, p):
    """Our type text in the jar dump's vocabulary (struct:X / enum:X)."""
    def one(m):
        n = m.group(1)
        return ("enum:" if n in p.enums else "struct:") + n
    return re.sub(r"named:([\w.]+)", one, t)


def norm_default(v, p):
    """Defaults as the jar dump shows them: zero and false are indistinguishable from none."""
    if v is None:
        return None
    if isinstance(v, float):
        return None if v == 0 else v
    if isinstance(v, str) and "." in v and v.split(".")[0] in p.enums:
        return v.split(".")[1]
    return v


def compare_fields(where, ours, theirs, p, errors):
    o = {f["id"]: f for f in ours}
    t = {f["id"]: f for f in theirs}
    for fid in sorted(set(o) | set(t)):
        if fid not in o:
            errors.append(f"{where}: field {fid} ({t[fid]['name']}) is in the jar, not in the IDL")
            continue
        if fid not in t:
            errors.append(f"{where}: field {fid} ({o[fid]['name']}) is in the IDL, not in the jar")
            continue
        a, b = o[fid], t[fid]
        mine = {"name": a["name"], "type": resolve(a["type"], p), "req": a["req"],
                "default": norm_default(a["default"], p)}
        jar = {"name": b["name"], "type": b["type"], "req": b["req"], "default": b["default"]}
        if jar["default"] is not None and isinstance(jar["default"], str):
            try:
                jar["default"] = float(jar["default"]) if jar["type"] in ("double", "i32", "i64", "i16") else jar["default"]
            except ValueError:
                pass
        # exceptions in a result and the success field carry no requiredness of their own
        if where.endswith("result"):
            mine.pop("req"); jar.pop("req")
        for k in mine:
            if mine[k] != jar[k]:
                errors.append(f"{where}: field {fid}: {k} is {mine[k]!r} in the IDL, {jar[k]!r} in the jar")


def main():
    idl, dump = sys.argv[1], sys.argv[2]
    p = Parser(open(idl).read()).parse()
    jar = json.load(open(dump))
    errors = []
    if p.consts.get("VERSION") != jar["version"]:
        errors.append(f"VERSION is {p.consts.get('VERSION')!r} in the IDL, {jar['version']!r} in the jar")
    for name in sorted(set(p.enums) | set(jar["enums"])):
        if p.enums.get(name) != jar["enums"].get(name):
            errors.append(f"enum {name}: IDL {p.enums.get(name)} jar {jar['enums'].get(name)}")
    for name in sorted(set(p.structs) | set(jar["structs"])):
        if name not in p.structs or name not in jar["structs"]:
            errors.append(f"struct {name} is only in the {'IDL' if name in p.structs else 'jar'}")
            continue
        if p.structs[name]["exception"] != jar["structs"][name]["exception"]:
            errors.append(f"{name}: exception-ness differs")
        compare_fields(name, p.structs[name]["fields"], jar["structs"][name]["fields"], p, errors)
    for name in sorted(set(p.methods) | set(jar["methods"])):
        if name not in p.methods or name not in jar["methods"]:
            errors.append(f"method {name} is only in the {'IDL' if name in p.methods else 'jar'}")
            continue
        for part in ("args", "result"):
            compare_fields(f"{name} {part}", p.methods[name][part], jar["methods"][name][part], p, errors)
    for e in errors:
        print(e)
    n = len(p.structs) + len(p.enums) + len(p.methods)
    print(f"{'MISMATCH' if errors else 'OK'}: {len(p.structs)} structs/exceptions, {len(p.enums)} enums, "
          f"{len(p.methods)} methods compared; {len(errors)} difference(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
