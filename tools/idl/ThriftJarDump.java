/*
 * ThriftJarDump - describe the Thrift interface compiled into a Cassandra jar, as canonical JSON.
 *
 * Run with the JDK's source launcher against the cached jars:
 *   java -cp '.cache/cassandra/lib/*' tools/idl/ThriftJarDump.java > jar.json
 * It reflects over every class of org.apache.cassandra.thrift: structs and exceptions (field id,
 * name, type, requiredness, from the classes' own field metadata), enums (names and values), the
 * service's methods (the generated <method>_args and _result classes) and the VERSION constant.
 * tools/idl/compare.py compares this with `thrift --gen json` of our thrift/cassandra.thrift.
 */
import java.lang.reflect.*;
import java.util.*;
import java.util.jar.*;

public class ThriftJarDump {
    static final String PKG = "org.apache.cassandra.thrift.";

    /* quote - a JSON string literal */
    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\');
            b.append(c);
        }
        return b.append('"').toString();
    }

    /* typeName - our canonical type text, from Thrift metadata and the Java type side by side
     * (Thrift 0.5 metadata says STRING for both string and binary; the Java type tells them apart) */
    static String typeName(Object meta, Type jtype) throws Exception {
        Class<?> mc = meta.getClass();
        byte t = mc.getField("type").getByte(meta);
        switch (mc.getSimpleName()) {
            case "StructMetaData":
                return "struct:" + ((Class<?>) mc.getField("structClass").get(meta)).getSimpleName();
            case "EnumMetaData":
                return "enum:" + ((Class<?>) mc.getField("enumClass").get(meta)).getSimpleName();
            case "ListMetaData":
            case "SetMetaData": {
                Type elem = ((ParameterizedType) jtype).getActualTypeArguments()[0];
                String kind = mc.getSimpleName().equals("ListMetaData") ? "list" : "set";
                return kind + "<" + typeName(mc.getField("elemMetaData").get(meta), elem) + ">";
            }
            case "MapMetaData": {
                Type[] kv = ((ParameterizedType) jtype).getActualTypeArguments();
                return "map<" + typeName(mc.getField("keyMetaData").get(meta), kv[0]) + ","
                        + typeName(mc.getField("valueMetaData").get(meta), kv[1]) + ">";
            }
            default:
                if (t == 12 && jtype instanceof Class)  // exceptions in _result classes carry no class
                    return "struct:" + ((Class<?>) jtype).getSimpleName();
                switch (t) {
                    case 2: return "bool";
                    case 3: return "byte";
                    case 4: return "double";
                    case 6: return "i16";
                    case 8: return "i32";
                    case 10: return "i64";
                    case 11:
                        if (jtype == byte[].class || jtype.getTypeName().equals("java.nio.ByteBuffer")) return "binary";
                        return "string";
                    default: return "type" + t;
                }
        }
    }

    /* defaultText - a field's value in a freshly built object, as JSON: null when unset or zero
     * (Thrift 0.5 gives primitives no "unset" state, so a zero default and no default look alike) */
    static String defaultText(Object v) {
        if (v == null) return "null";
        if (v instanceof Number && ((Number) v).doubleValue() == 0) return "null";
        if (v instanceof Boolean && !((Boolean) v)) return "null";
        if (v instanceof Number) return Double.toString(((Number) v).doubleValue());
        if (v instanceof Enum) return quote(((Enum<?>) v).name());
        return quote(v.toString());
    }

    /* fields - the JSON array describing one generated struct class */
    static String fields(Class<?> c) throws Exception {
        Map<?, ?> meta = (Map<?, ?>) c.getField("metaDataMap").get(null);
        TreeMap<Integer, String> byId = new TreeMap<>();
        Object fresh = c.getConstructor().newInstance();   // fields with IDL defaults are set here
        for (Map.Entry<?, ?> e : meta.entrySet()) {
            Object fieldEnum = e.getKey();
            short id = (Short) fieldEnum.getClass().getMethod("getThriftFieldId").invoke(fieldEnum);
            Object fmd = e.getValue();
            String name = (String) fmd.getClass().getField("fieldName").get(fmd);
            byte req = fmd.getClass().getField("requirementType").getByte(fmd);
            Object vmd = fmd.getClass().getField("valueMetaData").get(fmd);
            Type jtype = c.getField(name).getGenericType();
            String reqName = req == 1 ? "required" : req == 2 ? "optional" : "default";
            byId.put((int) id, "{\"id\":" + id + ",\"name\":" + quote(name) + ",\"type\":"
                    + quote(typeName(vmd, jtype)) + ",\"req\":" + quote(reqName)
                    + ",\"default\":" + defaultText(c.getField(name).get(fresh)) + "}");
        }
        return "[" + String.join(",", byId.values()) + "]";
    }

    public static void main(String[] args) throws Exception {
        String jarPath = null;
        for (String p : System.getProperty("java.class.path").split(":"))
            if (p.contains("cassandra-all")) jarPath = p;
        if (jarPath == null) {
            // the classpath was given as a wildcard: find the jar in the folder
            for (String p : System.getProperty("java.class.path").split(":")) {
                java.io.File d = new java.io.File(p).getParentFile();
                if (d != null && d.isDirectory())
                    for (java.io.File f : d.listFiles())
                        if (f.getName().startsWith("cassandra-all")) jarPath = f.getPath();
            }
        }
        if (jarPath == null) throw new IllegalStateException("cassandra-all jar not on the classpath");

        TreeMap<String, String> structs = new TreeMap<>(), enums = new TreeMap<>(), methods = new TreeMap<>();
        Class<?> tbase = Class.forName("org.apache.thrift.TBase");
        Class<?> tenum = Class.forName("org.apache.thrift.TEnum");
        try (JarFile jar = new JarFile(jarPath)) {
            for (JarEntry je : Collections.list(jar.entries())) {
                String n = je.getName();
                if (!n.startsWith("org/apache/cassandra/thrift/") || !n.endsWith(".class")) continue;
                String cn = n.substring(0, n.length() - 6).replace('/', '.');
                String simple = cn.substring(PKG.length());
                if (simple.contains("/")) continue;
                Class<?> c = Class.forName(cn, false, ThriftJarDump.class.getClassLoader());
                if (simple.startsWith("Cassandra$")) {
                    String inner = simple.substring("Cassandra$".length());
                    if (inner.endsWith("_args") && tbase.isAssignableFrom(c)) {
                        String m = inner.substring(0, inner.length() - 5);
                        Class<?> r = Class.forName(PKG + "Cassandra$" + m + "_result");
                        methods.put(m, "{\"args\":" + fields(c) + ",\"result\":" + fields(r) + "}");
                    }
                } else if (!simple.contains("$") && tbase.isAssignableFrom(c)) {
                    structs.put(simple, "{\"exception\":" + Throwable.class.isAssignableFrom(c)
                            + ",\"fields\":" + fields(c) + "}");
                } else if (!simple.contains("$") && c.isEnum() && tenum.isAssignableFrom(c)) {
                    List<String> vals = new ArrayList<>();
                    for (Object v : c.getEnumConstants())
                        vals.add(quote(((Enum<?>) v).name()) + ":" + tenum.getMethod("getValue").invoke(v));
                    enums.put(simple, "{" + String.join(",", vals) + "}");
                }
            }
        }
        String version = (String) Class.forName(PKG + "Constants").getField("VERSION").get(null);
        StringBuilder out = new StringBuilder("{\n\"version\":" + quote(version) + ",\n\"structs\":{\n");
        List<String> parts = new ArrayList<>();
        structs.forEach((k, v) -> parts.add(quote(k) + ":" + v));
        out.append(String.join(",\n", parts)).append("},\n\"enums\":{\n");
        parts.clear();
        enums.forEach((k, v) -> parts.add(quote(k) + ":" + v));
        out.append(String.join(",\n", parts)).append("},\n\"methods\":{\n");
        parts.clear();
        methods.forEach((k, v) -> parts.add(quote(k) + ":" + v));
        out.append(String.join(",\n", parts)).append("}\n}\n");
        System.out.print(out);
    }
}
