// Configuration schema, TOML/JSON readers and validation (DESIGN §6).
//
// The schema is one table (kFields) that the readers, set_config_value,
// validate and to_json all walk, so a new key is added in one place.
#include "core/config.hpp"

#include "core/error.hpp"

#include <toml++/toml.h>

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <set>
#include <system_error>
#include <tuple>
#include <variant>

namespace openace::core {

namespace {

// ------------------------------------------------------------ text helpers

// Length of the valid UTF-8 sequence starting at s[i], 0 when invalid.
std::size_t utf8_len(std::string_view s, std::size_t i)
{
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size())
        return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto d = static_cast<unsigned char>(s[i + k]);
        if ((d & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool valid_utf8(std::string_view s)
{
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_len(s, i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

// Keys, values and paths from the input end up in error messages, which go to
// logs, terminals and JSON events: escape control bytes and invalid UTF-8
// (nlohmann refuses to dump invalid UTF-8) and bound the length.
std::string printable(std::string_view s, char quote = 0, std::size_t max_chars = 64)
{
    std::string out;
    std::size_t chars = 0;
    for (std::size_t i = 0; i < s.size(); ++chars) {
        if (chars == max_chars) {
            out += "...";
            break;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t n = utf8_len(s, i);
        if (n == 0 || c < 0x20 || c == 0x7F) {
            out += fmt::format("\\x{:02x}", c);
            ++i;
        } else {
            if (quote && c == static_cast<unsigned char>(quote))
                out += '\\';
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

std::string dquote(std::string_view s) { return "\"" + printable(s, '"') + "\""; }

std::string key_text(std::string_view k) { return printable(k, '\''); }

// ------------------------------------------------------------------ schema

using FieldRef = std::variant<std::string *, int *, int64_t *, double *, bool *,
                              std::vector<std::string> *>;
// Returns an empty string when the value is valid, else why it is not.
using Check = std::string (*)(const Config &);

struct Field {
    std::string_view section;
    std::string_view name;
    FieldRef (*ref)(Config &);
    Check check;

    std::string dotted() const { return fmt::format("{}.{}", section, name); }
};

template <int64_t Lo, int64_t Hi>
std::string int_range(int64_t v)
{
    if (v < Lo || v > Hi)
        return fmt::format("must be between {} and {}, got {}", Lo, Hi, v);
    return {};
}

// Upper bounds keep durations convertible to chrono types without overflow.
template <double Lo, double Hi, bool LoInclusive>
std::string real_range(double v)
{
    const bool ok = (LoInclusive ? v >= Lo : v > Lo) && v <= Hi;
    if (!ok)
        return fmt::format("must be {} {} and at most {}, got {}",
                           LoInclusive ? "at least" : "greater than", Lo, Hi, v);
    return {};
}

std::string level_name(const std::string &v)
{
    static constexpr std::string_view kLevels[] = {"trace", "debug",  "info", "warn",
                                                   "warning", "error", "off"};
    if (std::find(std::begin(kLevels), std::end(kLevels), v) == std::end(kLevels))
        return fmt::format(
            "must be one of trace, debug, info, warn, warning, error, off; got {}",
            dquote(v));
    return {};
}

std::string log_format(const std::string &v)
{
    if (v != "text" && v != "json")
        return fmt::format("must be \"text\" or \"json\", got {}", dquote(v));
    return {};
}

std::string host_port_error(std::string_view s, HostPort *out);

std::string host_port(const std::string &v) { return host_port_error(v, nullptr); }
std::string host_port_or_off(const std::string &v) { return v.empty() ? std::string() : host_port(v); }

// The token travels in HTTP headers and URLs.
std::string api_token(const std::string &v)
{
    for (const char ch : v) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7F)
            return "must be printable ASCII without spaces";
    }
    return {};
}

std::string trackers(const std::vector<std::string> &v)
{
    for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i].empty())
            return fmt::format("element {} is empty", i + 1);
    return {};
}

std::string peer_list(const std::vector<std::string> &v)
{
    for (std::size_t i = 0; i < v.size(); ++i) {
        const auto &e = v[i];
        auto colon = e.rfind(':');
        if (e.empty() || colon == std::string::npos || colon == 0 || colon + 1 == e.size())
            return fmt::format("element {}: '{}' is not HOST:PORT", i + 1, e);
        const std::string port = e.substr(colon + 1);
        if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) < 1 ||
            std::stoi(port) > 65535)
            return fmt::format("element {}: '{}' has no port 1-65535", i + 1, e);
    }
    return {};
}

std::string any(const auto &) { return {}; }

#define OA_FIELD(sec, key, check)                                                         \
    Field                                                                                 \
    {                                                                                     \
        #sec, #key, [](Config &c) -> FieldRef { return &c.sec.key; },                     \
            [](const Config &c) -> std::string { return check(c.sec.key); }              \
    }

constexpr int64_t kMiB = 1 << 20;

const Field kFields[] = {
    OA_FIELD(engine, log_level, level_name),
    OA_FIELD(engine, http_address, host_port),
    OA_FIELD(engine, tcp_api_address, host_port_or_off),
    OA_FIELD(engine, max_peers, (int_range<1, 100000>)),
    OA_FIELD(engine, state_dir, any),
    OA_FIELD(engine, allow_remote_access, any),
    OA_FIELD(engine, api_token, api_token),
    OA_FIELD(engine, max_active_jobs, (int_range<1, 10000>)),
    OA_FIELD(engine, event_queue_size, (int_range<1, 10000000>)),
    OA_FIELD(engine, http_max_connections, (int_range<1, 100000>)),
    OA_FIELD(engine, http_idle_timeout, (real_range<0.0, 86400.0, false>)),
    OA_FIELD(engine, http_max_header_bytes, (int_range<1, 16 * kMiB>)),
    OA_FIELD(engine, http_max_body_bytes, (int_range<1, 1024 * kMiB>)),

    OA_FIELD(transport, listen_port, (int_range<0, 65535>)),
    OA_FIELD(transport, trackers, trackers),
    OA_FIELD(transport, download_rate_limit, (int_range<0, (int64_t{1} << 40)>)),
    OA_FIELD(transport, upload_rate_limit, (int_range<0, (int64_t{1} << 40)>)),
    OA_FIELD(transport, cache_size_mb, (int_range<1, (int64_t{1} << 30)>)),
    OA_FIELD(transport, embedded_tracker, any),
    OA_FIELD(transport, max_connections, (int_range<1, 100000>)),
    OA_FIELD(transport, peers, peer_list),
    OA_FIELD(transport, idle_timeout, (real_range<0.0, 86400.0, false>)),
    OA_FIELD(transport, pex, any),

    OA_FIELD(streaming, buffer_size, (real_range<0.0, 3600.0, false>)),
    OA_FIELD(streaming, hardware_acceleration, any),
    OA_FIELD(streaming, piece_duration, (real_range<0.0, 60.0, false>)),
    OA_FIELD(streaming, idle_timeout, (real_range<0.0, 86400.0, false>)),

    OA_FIELD(live, window_seconds, (real_range<0.0, 86400.0, false>)),
    OA_FIELD(live, join_delay, (real_range<0.0, 3600.0, true>)),
    OA_FIELD(live, skip_after, (real_range<0.0, 3600.0, false>)),
    OA_FIELD(live, source_copies, (int_range<1, 1000>)),
    OA_FIELD(live, chat, any),

    OA_FIELD(security, tls_enabled, any),

    OA_FIELD(logging, max_entries, (int_range<1, 100000000>)),
    OA_FIELD(logging, max_memory_mb, (int_range<1, 1024 * 1024>)),
    OA_FIELD(logging, console, any),
    OA_FIELD(logging, format, log_format),
    OA_FIELD(logging, file, any),
    OA_FIELD(logging, file_max_mb, (int_range<1, 1024 * 1024>)),
    OA_FIELD(logging, file_count, (int_range<1, 1000>)),
    OA_FIELD(logging, event_level, level_name),
};
#undef OA_FIELD

constexpr std::size_t kFieldCount = std::size(kFields);

constexpr std::string_view kSections[] = {"engine", "live",     "logging",
                                          "security", "streaming", "transport"};

bool is_section(std::string_view s)
{
    return std::find(std::begin(kSections), std::end(kSections), s) != std::end(kSections);
}

int find_field(std::string_view section, std::string_view name)
{
    for (std::size_t i = 0; i < kFieldCount; ++i)
        if (kFields[i].section == section && kFields[i].name == name)
            return static_cast<int>(i);
    return -1;
}

int find_dotted(std::string_view dotted)
{
    const auto dot = dotted.find('.');
    if (dot == std::string_view::npos)
        return -1;
    return find_field(dotted.substr(0, dot), dotted.substr(dot + 1));
}

bool is_list(int idx)
{
    Config scratch;
    return std::holds_alternative<std::vector<std::string> *>(kFields[idx].ref(scratch));
}

template <class... Ts>
struct overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

const char *expected_name(FieldRef ref)
{
    return std::visit(overloaded{
                          [](std::string *) { return "a string"; },
                          [](int *) { return "an integer"; },
                          [](int64_t *) { return "an integer"; },
                          [](double *) { return "a number"; },
                          [](bool *) { return "a boolean"; },
                          [](std::vector<std::string> *) { return "an array of strings"; },
                      },
                      ref);
}

// ----------------------------------------------------------- assignment

// A value read from TOML or JSON, before it is known to fit its key.
struct Incoming {
    enum class Kind { String, Integer, BigInteger, Float, Boolean, StringList, Other };
    Kind kind = Kind::Other;
    std::string_view type; // what the input holds, for messages
    std::string s;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    std::vector<std::string> list;
};

// Returns an empty string on success, else the message after "key 'x': ".
std::string assign(FieldRef ref, Incoming &&v)
{
    using K = Incoming::Kind;
    const auto mismatch = [&] {
        return fmt::format("expected {}, got {}", expected_name(ref), v.type);
    };
    const auto int_out_of_range = [&] {
        return v.kind == K::BigInteger ? std::string("integer is out of range")
                                       : fmt::format("integer {} is out of range", v.i);
    };
    return std::visit(
        overloaded{
            [&](std::string *p) -> std::string {
                if (v.kind != K::String)
                    return mismatch();
                *p = std::move(v.s);
                return {};
            },
            [&](int *p) -> std::string {
                if (v.kind == K::BigInteger || (v.kind == K::Integer && (v.i < INT_MIN || v.i > INT_MAX)))
                    return int_out_of_range();
                if (v.kind != K::Integer)
                    return mismatch();
                *p = static_cast<int>(v.i);
                return {};
            },
            [&](int64_t *p) -> std::string {
                if (v.kind == K::BigInteger)
                    return int_out_of_range();
                if (v.kind != K::Integer)
                    return mismatch();
                *p = v.i;
                return {};
            },
            [&](double *p) -> std::string {
                if (v.kind == K::Integer)
                    *p = static_cast<double>(v.i);
                else if (v.kind == K::Float)
                    *p = v.d;
                else
                    return mismatch();
                return {};
            },
            [&](bool *p) -> std::string {
                if (v.kind != K::Boolean)
                    return mismatch();
                *p = v.b;
                return {};
            },
            [&](std::vector<std::string> *p) -> std::string {
                if (v.kind != K::StringList)
                    return mismatch();
                *p = std::move(v.list);
                return {};
            },
        },
        ref);
}

// --------------------------------------------------------------- errors

[[noreturn]] void fail(std::string_view op, std::string_view source, std::size_t line,
                       const std::string &msg)
{
    if (line)
        throw_errorf(Errc::CONFIG, "config", std::string(op), "{}:{}: {}", source, line, msg);
    throw_errorf(Errc::CONFIG, "config", std::string(op), "{}: {}", source, msg);
}

struct Located {
    std::size_t line = 0;
    std::size_t col = 0;
    std::string msg;
};

// Line of the key that set each field (index into kFields), 0 when unset; lets
// validation errors point at the offending line.
using KeyLines = std::vector<std::size_t>;

void check_all(const Config &c, std::string_view source, const KeyLines &lines)
{
    std::size_t best = kFieldCount;
    for (std::size_t i = 0; i < kFieldCount; ++i) {
        if (kFields[i].check(c).empty())
            continue;
        // Keys left at their default have no line; keys from the input come first.
        const auto order = [&](std::size_t k) { return lines[k] ? lines[k] : SIZE_MAX; };
        if (best == kFieldCount || order(i) < order(best))
            best = i;
    }
    if (best != kFieldCount)
        fail("parse", source, lines[best],
             fmt::format("key '{}': {}", kFields[best].dotted(), kFields[best].check(c)));
}

// ----------------------------------------------------------------- TOML

std::string_view toml_type(const toml::node &n)
{
    switch (n.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    case toml::node_type::none: break;
    }
    return "nothing";
}

Incoming toml_scalar(const toml::node &n)
{
    using K = Incoming::Kind;
    Incoming v;
    v.type = toml_type(n);
    if (auto s = n.as_string()) {
        v.kind = K::String;
        v.s = s->get();
    } else if (auto i = n.as_integer()) {
        v.kind = K::Integer;
        v.i = i->get();
    } else if (auto d = n.as_floating_point()) {
        v.kind = K::Float;
        v.d = d->get();
    } else if (auto b = n.as_boolean()) {
        v.kind = K::Boolean;
        v.b = b->get();
    }
    return v;
}

// The first container nested deeper than the limit (the root is level 1).
const toml::node *too_deep(const toml::node &n, int level)
{
    if (level > kMaxConfigDepth)
        return &n;
    if (auto t = n.as_table()) {
        for (auto &&[k, v] : *t)
            if (v.is_table() || v.is_array())
                if (auto d = too_deep(v, level + 1))
                    return d;
    } else if (auto a = n.as_array()) {
        for (auto &v : *a)
            if (v.is_table() || v.is_array())
                if (auto d = too_deep(v, level + 1))
                    return d;
    }
    return nullptr;
}

Located at(const toml::key &k, const toml::node &n, std::string msg)
{
    const auto &pos = k.source().begin.line ? k.source().begin : n.source().begin;
    return Located{pos.line, pos.column, std::move(msg)};
}

void parse_toml(std::string_view text, std::string_view source, Config &c, KeyLines &lines)
{
    toml::table root;
    try {
        root = toml::parse(text);
    } catch (const toml::parse_error &e) {
        const auto &b = e.source().begin;
        throw_errorf(Errc::CONFIG, "config", "parse", "{}:{}:{}: TOML syntax error: {}", source,
                     b.line, b.column, printable(e.description(), 0, 200));
    }
    if (auto deep = too_deep(root, 1))
        fail("parse", source, deep->source().begin.line,
             fmt::format("nesting deeper than {} levels", kMaxConfigDepth));

    // toml::table iterates in key order, not file order: collect every error and
    // report the one nearest the top of the file.
    std::vector<Located> errors;
    for (auto &&[sk, snode] : root) {
        const std::string_view section = sk.str();
        if (!is_section(section)) {
            errors.push_back(at(sk, snode,
                                fmt::format("unknown {} '{}'",
                                            snode.is_table() ? "section" : "key",
                                            key_text(section))));
            continue;
        }
        const toml::table *table = snode.as_table();
        if (!table) {
            errors.push_back(at(sk, snode,
                                fmt::format("key '{}': expected a table, got {}", section,
                                            toml_type(snode))));
            continue;
        }
        for (auto &&[fk, fnode] : *table) {
            const int idx = find_field(section, fk.str());
            if (idx < 0) {
                errors.push_back(at(fk, fnode,
                                    fmt::format("unknown key '{}.{}'", section,
                                                key_text(fk.str()))));
                continue;
            }
            const Field &f = kFields[idx];
            Incoming v;
            const toml::array *arr = fnode.as_array();
            if (arr && is_list(idx)) {
                v.kind = Incoming::Kind::StringList;
                v.type = "array";
                bool ok = true;
                for (std::size_t i = 0; i < arr->size(); ++i) {
                    const toml::node &e = *arr->get(i);
                    if (auto s = e.as_string()) {
                        v.list.push_back(s->get());
                        continue;
                    }
                    Located err = at(fk, fnode,
                                     fmt::format("key '{}': element {}: expected a string, got {}",
                                                 f.dotted(), i + 1, toml_type(e)));
                    if (e.source().begin.line) {
                        err.line = e.source().begin.line;
                        err.col = e.source().begin.column;
                    }
                    errors.push_back(std::move(err));
                    ok = false;
                    break;
                }
                if (!ok)
                    continue;
            } else {
                v = toml_scalar(fnode);
            }
            std::string msg = assign(f.ref(c), std::move(v));
            if (!msg.empty()) {
                errors.push_back(at(fk, fnode, fmt::format("key '{}': {}", f.dotted(), msg)));
                continue;
            }
            lines[idx] = at(fk, fnode, {}).line;
        }
    }
    if (!errors.empty()) {
        const auto first = std::min_element(errors.begin(), errors.end(), [](auto &a, auto &b) {
            return std::tie(a.line, a.col) < std::tie(b.line, b.col);
        });
        fail("parse", source, first->line, first->msg);
    }
}

// ----------------------------------------------------------------- JSON

// nlohmann's SAX interface reports no positions.  It reads its input one
// character at a time through this iterator, which counts the newlines
// consumed so far; when the lexer has just finished a key (a string token
// ends at its closing quote, with no look-ahead), the count is the key's line.
struct LineCounter {
    std::size_t newlines = 0;
    bool last_was_newline = false;
};

class CountingIterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char *;
    using reference = const char &;

    CountingIterator() = default;
    CountingIterator(const char *p, LineCounter *counter) : p_(p), counter_(counter) {}

    reference operator*() const { return *p_; }
    CountingIterator &operator++()
    {
        counter_->last_was_newline = *p_ == '\n';
        if (counter_->last_was_newline)
            ++counter_->newlines;
        ++p_;
        return *this;
    }
    CountingIterator operator++(int)
    {
        CountingIterator old = *this;
        ++*this;
        return old;
    }
    bool operator==(const CountingIterator &o) const { return p_ == o.p_; }

private:
    const char *p_ = nullptr;
    LineCounter *counter_ = nullptr;
};

class JsonReader final : public nlohmann::json_sax<nlohmann::json> {
public:
    JsonReader(std::string_view source, Config &c, KeyLines &lines, const LineCounter &counter)
        : source_(source), config_(c), lines_(lines), counter_(counter)
    {
    }

    bool null() override { return value(other("null"), line_now()); }
    bool boolean(bool b) override
    {
        Incoming v;
        v.kind = Incoming::Kind::Boolean;
        v.type = "boolean";
        v.b = b;
        return value(std::move(v), line_now());
    }
    bool number_integer(number_integer_t i) override
    {
        Incoming v;
        v.kind = Incoming::Kind::Integer;
        v.type = "integer";
        v.i = i;
        return value(std::move(v), line_after_number());
    }
    bool number_unsigned(number_unsigned_t u) override
    {
        Incoming v;
        v.kind = u > static_cast<uint64_t>(INT64_MAX) ? Incoming::Kind::BigInteger
                                                      : Incoming::Kind::Integer;
        v.type = "integer";
        v.i = static_cast<int64_t>(u);
        return value(std::move(v), line_after_number());
    }
    bool number_float(number_float_t d, const string_t &) override
    {
        Incoming v;
        v.kind = Incoming::Kind::Float;
        v.type = "float";
        v.d = d;
        return value(std::move(v), line_after_number());
    }
    bool string(string_t &s) override
    {
        Incoming v;
        v.kind = Incoming::Kind::String;
        v.type = "string";
        v.s = std::move(s);
        return value(std::move(v), line_now());
    }
    bool binary(binary_t &) override { return value(other("binary"), line_now()); }

    bool start_object(std::size_t) override
    {
        enter();
        switch (depth_) {
        case 1: // the root
        case 2: // a section
            return true;
        case 3:
            fail_at(key_line_, fmt::format("key '{}': expected {}, got object", field().dotted(),
                                           expected_name(field().ref(config_))));
        default:
            element_error("object", line_now());
        }
    }
    bool end_object() override
    {
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override
    {
        enter();
        switch (depth_) {
        case 1:
            fail_at(line_now(), "expected a JSON object at the top level, got array");
        case 2:
            fail_at(key_line_,
                    fmt::format("key '{}': expected an object, got array", section_));
        case 3:
            if (!is_list(field_))
                fail_at(key_line_,
                        fmt::format("key '{}': expected {}, got array", field().dotted(),
                                    expected_name(field().ref(config_))));
            items_.clear();
            return true;
        default:
            element_error("array", line_now());
        }
    }
    bool end_array() override
    {
        if (depth_ == 3) {
            Incoming v;
            v.kind = Incoming::Kind::StringList;
            v.type = "array";
            v.list = std::move(items_);
            items_.clear();
            assign_field(std::move(v));
        }
        --depth_;
        return true;
    }

    bool key(string_t &k) override
    {
        key_line_ = line_now();
        if (depth_ == 1) {
            if (!is_section(k))
                fail_at(key_line_, fmt::format("unknown section '{}'", key_text(k)));
            section_ = k;
            check_duplicate(section_);
        } else {
            field_ = find_field(section_, k);
            if (field_ < 0)
                fail_at(key_line_,
                        fmt::format("unknown key '{}.{}'", section_, key_text(k)));
            check_duplicate(field().dotted());
        }
        return true;
    }

    bool parse_error(std::size_t, const std::string &, const nlohmann::detail::exception &ex) override
    {
        // what(): "[json.exception.parse_error.101] parse error at line 2, column 5: <why>"
        std::string_view what = ex.what();
        std::size_t line = counter_.newlines + 1, col = 0;
        if (auto p = what.find(" at line "); p != std::string_view::npos) {
            std::size_t l = 0, c = 0;
            if (std::sscanf(what.data() + p, " at line %zu, column %zu", &l, &c) == 2) {
                line = l;
                col = c;
            }
        }
        std::string_view why = what;
        if (why.starts_with('[')) // "[json.exception.parse_error.101] "
            if (auto p = why.find("] "); p != std::string_view::npos)
                why.remove_prefix(p + 2);
        if (auto p = why.find(", column "); p != std::string_view::npos)
            if (auto q = why.find(": ", p); q != std::string_view::npos)
                why.remove_prefix(q + 2);
        if (why.starts_with("syntax error "))
            why.remove_prefix(13);
        const std::string msg = "JSON syntax error: " + printable(why, 0, 200);
        if (col)
            throw_errorf(Errc::CONFIG, "config", "parse", "{}:{}:{}: {}", source_, line, col, msg);
        fail_at(line, msg);
    }

private:
    [[noreturn]] void fail_at(std::size_t line, const std::string &msg)
    {
        fail("parse", source_, line, msg);
    }

    std::size_t line_now() const { return counter_.newlines + 1; }
    // A number ends only when the lexer has read the character after it; if
    // that was a newline, it has been counted already.
    std::size_t line_after_number() const
    {
        return counter_.newlines + (counter_.last_was_newline ? 0 : 1);
    }

    const Field &field() const { return kFields[field_]; }

    static Incoming other(std::string_view type)
    {
        Incoming v;
        v.type = type;
        return v;
    }

    void enter()
    {
        if (++depth_ > kMaxConfigDepth)
            fail_at(line_now(), fmt::format("nesting deeper than {} levels", kMaxConfigDepth));
    }

    void check_duplicate(const std::string &dotted)
    {
        if (!seen_.insert(dotted).second)
            fail_at(key_line_, fmt::format("duplicate key '{}'", key_text(dotted)));
    }

    [[noreturn]] void element_error(std::string_view type, std::size_t line)
    {
        fail_at(line, fmt::format("key '{}': element {}: expected a string, got {}",
                                  field().dotted(), items_.size() + 1, type));
    }

    void assign_field(Incoming &&v)
    {
        std::string msg = assign(field().ref(config_), std::move(v));
        if (!msg.empty())
            fail_at(key_line_, fmt::format("key '{}': {}", field().dotted(), msg));
        lines_[field_] = key_line_;
    }

    bool value(Incoming &&v, std::size_t line)
    {
        switch (depth_) {
        case 0:
            fail_at(line, fmt::format("expected a JSON object at the top level, got {}", v.type));
        case 1:
            fail_at(key_line_,
                    fmt::format("key '{}': expected an object, got {}", section_, v.type));
        case 2:
            assign_field(std::move(v));
            return true;
        default:
            if (v.kind != Incoming::Kind::String)
                element_error(v.type, line);
            items_.push_back(std::move(v.s));
            return true;
        }
    }

    std::string_view source_;
    Config &config_;
    KeyLines &lines_;
    const LineCounter &counter_;
    int depth_ = 0;
    std::string section_;
    int field_ = -1;
    std::size_t key_line_ = 1;
    std::vector<std::string> items_;
    std::set<std::string> seen_;
};

void parse_json(std::string_view text, std::string_view source, Config &c, KeyLines &lines)
{
    LineCounter counter;
    JsonReader reader(source, c, lines, counter);
    const bool ok = nlohmann::json::sax_parse(CountingIterator(text.data(), &counter),
                                              CountingIterator(text.data() + text.size(), &counter),
                                              &reader, nlohmann::json::input_format_t::json,
                                              /*strict=*/true, /*ignore_comments=*/false);
    if (!ok) // every reader callback throws instead of returning false
        fail("parse", source, 0, "JSON parse failed");
}

bool looks_like_json(std::string_view text)
{
    if (text.starts_with("\xEF\xBB\xBF"))
        text.remove_prefix(3);
    const auto p = text.find_first_not_of(" \t\r\n");
    return p != std::string_view::npos && text[p] == '{';
}

// ------------------------------------------------------ command-line text

template <class T>
bool parse_number(std::string_view s, T &out)
{
    const char *end = s.data() + s.size();
    auto [p, ec] = std::from_chars(s.data(), end, out);
    return ec == std::errc() && p == end && !s.empty();
}

std::string set_from_text(FieldRef ref, std::string_view text)
{
    const auto mismatch = [&] {
        return fmt::format("expected {}, got {}", expected_name(ref), dquote(text));
    };
    return std::visit(
        overloaded{
            [&](std::string *p) -> std::string {
                if (!valid_utf8(text))
                    return fmt::format("expected UTF-8 text, got {}", dquote(text));
                *p = std::string(text);
                return {};
            },
            [&](int *p) -> std::string {
                int64_t v;
                if (!parse_number(text, v))
                    return mismatch();
                if (v < INT_MIN || v > INT_MAX)
                    return fmt::format("integer {} is out of range", v);
                *p = static_cast<int>(v);
                return {};
            },
            [&](int64_t *p) -> std::string { return parse_number(text, *p) ? "" : mismatch(); },
            [&](double *p) -> std::string { return parse_number(text, *p) ? "" : mismatch(); },
            [&](bool *p) -> std::string {
                std::string lower(text);
                std::transform(lower.begin(), lower.end(), lower.begin(),
                               [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
                if (lower == "true" || lower == "yes" || lower == "on" || lower == "1")
                    *p = true;
                else if (lower == "false" || lower == "no" || lower == "off" || lower == "0")
                    *p = false;
                else
                    return mismatch();
                return {};
            },
            [&](std::vector<std::string> *p) -> std::string {
                if (!valid_utf8(text))
                    return fmt::format("expected UTF-8 text, got {}", dquote(text));
                std::vector<std::string> items;
                std::string_view rest = text;
                while (!rest.empty()) {
                    const auto comma = rest.find(',');
                    std::string_view item = rest.substr(0, comma);
                    rest = comma == std::string_view::npos ? std::string_view{}
                                                           : rest.substr(comma + 1);
                    const auto b = item.find_first_not_of(" \t");
                    if (b == std::string_view::npos)
                        continue;
                    item = item.substr(b, item.find_last_not_of(" \t") - b + 1);
                    items.emplace_back(item);
                }
                *p = std::move(items);
                return {};
            },
        },
        ref);
}

// --------------------------------------------------------- host and port

std::string host_port_error(std::string_view s, HostPort *out)
{
    const auto bad = [&](std::string_view why) {
        return fmt::format("{}; expected \"host:port\" or \"[ipv6]:port\", got {}", why, dquote(s));
    };
    std::string_view host, port;
    if (s.starts_with('[')) {
        const auto close = s.find(']');
        if (close == std::string_view::npos)
            return bad("missing ']'");
        host = s.substr(1, close - 1);
        if (host.empty() || host.find(':') == std::string_view::npos ||
            host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
            return bad("not an IPv6 address in brackets");
        if (close + 1 >= s.size() || s[close + 1] != ':')
            return bad("missing port");
        port = s.substr(close + 2);
    } else {
        const auto colon = s.rfind(':');
        if (colon == std::string_view::npos)
            return bad("missing port");
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return bad("IPv6 addresses need brackets");
        if (host.empty())
            return bad("missing host");
        if (host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789.-_") != std::string_view::npos)
            return bad("invalid host");
    }
    unsigned value = 0;
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos ||
        !parse_number(port, value) || value > 65535)
        return bad("port must be a number from 0 to 65535");
    if (out) {
        out->host = std::string(host);
        out->port = static_cast<uint16_t>(value);
    }
    return {};
}

std::string default_state_dir()
{
    // XDG base directory spec: a relative XDG_STATE_HOME is invalid and ignored.
    if (const char *x = std::getenv("XDG_STATE_HOME"); x && x[0] == '/')
        return std::string(x) + "/openace";
    std::string home;
    if (const char *h = std::getenv("HOME"); h && *h) {
        home = h;
    } else {
        long size = sysconf(_SC_GETPW_R_SIZE_MAX);
        std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384);
        passwd pw{};
        passwd *found = nullptr;
        if (getpwuid_r(getuid(), &pw, buf.data(), buf.size(), &found) == 0 && found &&
            found->pw_dir && found->pw_dir[0])
            home = found->pw_dir;
    }
    if (home.empty())
        return {};
    while (home.size() > 1 && home.back() == '/')
        home.pop_back();
    return (home == "/" ? "" : home) + "/.local/state/openace";
}

} // namespace

// ------------------------------------------------------------- public API

Config default_config()
{
    Config c;
    c.engine.state_dir = default_state_dir();
    return c;
}

Config parse_config(std::string_view text, std::string_view source)
{
    const std::string src = printable(source, 0, 200);
    if (text.size() > kMaxConfigBytes)
        fail("parse", src, 0,
             fmt::format("input is {} bytes, more than the limit of {} bytes (1 MiB)",
                         text.size(), kMaxConfigBytes));
    Config c = default_config();
    KeyLines lines(kFieldCount, 0);
    if (looks_like_json(text))
        parse_json(text, src, c, lines);
    else
        parse_toml(text, src, c, lines);
    check_all(c, src, lines);
    return c;
}

Config load_config_file(const std::string &path)
{
    const auto cannot_read = [&](int err) {
        throw_errorf(Errc::CONFIG, "config", "load", "cannot read '{}': {}",
                     printable(path, '\'', 200),
                     err ? std::generic_category().message(err) : std::string("read error"));
    };
    std::unique_ptr<std::FILE, int (*)(std::FILE *)> f(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
    if (!f)
        cannot_read(errno);
    std::string text;
    char buf[16384];
    for (;;) {
        errno = 0;
        const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
        text.append(buf, n);
        if (text.size() > kMaxConfigBytes)
            throw_errorf(Errc::CONFIG, "config", "load",
                         "cannot read '{}': larger than the limit of {} bytes (1 MiB)",
                         printable(path, '\'', 200), kMaxConfigBytes);
        if (n < sizeof buf) {
            if (std::ferror(f.get()))
                cannot_read(errno);
            break;
        }
    }
    return parse_config(text, path);
}

void set_config_value(Config &c, std::string_view dotted_key, std::string_view value)
{
    constexpr std::string_view kSource = "command line";
    const int idx = find_dotted(dotted_key);
    if (idx < 0)
        fail("set", kSource, 0, fmt::format("unknown key '{}'", key_text(dotted_key)));
    const Field &f = kFields[idx];
    Config copy = c;
    std::string msg = set_from_text(f.ref(copy), value);
    if (msg.empty())
        msg = f.check(copy);
    if (!msg.empty())
        fail("set", kSource, 0, fmt::format("key '{}': {}", f.dotted(), msg));
    validate(copy);
    c = std::move(copy);
}

nlohmann::json to_json(const Config &c, bool mask_secrets)
{
    Config copy = c; // FieldRef points into a mutable Config
    nlohmann::json j = nlohmann::json::object();
    for (std::string_view s : kSections)
        j[std::string(s)] = nlohmann::json::object();
    for (const Field &f : kFields)
        std::visit([&](auto *p) { j[std::string(f.section)][std::string(f.name)] = *p; },
                   f.ref(copy));
    if (mask_secrets && !c.engine.api_token.empty())
        j["engine"]["api_token"] = "***";
    return j;
}

void validate(const Config &c)
{
    for (const Field &f : kFields)
        if (std::string msg = f.check(c); !msg.empty())
            throw_errorf(Errc::CONFIG, "config", "validate", "key '{}': {}", f.dotted(), msg);
}

HostPort parse_host_port(std::string_view s, std::string_view key)
{
    HostPort hp;
    if (std::string msg = host_port_error(s, &hp); !msg.empty())
        throw_errorf(Errc::CONFIG, "config", "parse", "key '{}': {}", key_text(key), msg);
    return hp;
}

} // namespace openace::core
