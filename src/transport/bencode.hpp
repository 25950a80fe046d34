// Strict bencode (BEP 3): canonical integers, byte strings without leading
// zeros in their length, dictionaries with strictly sorted unique keys
// (relaxable for peer payloads, see Limits), no trailing data, and depth /
// size / item limits.  Decoded values remember the [begin, end) byte span
// they came from, so a caller can hash a sub-value exactly as it appeared on
// the wire (the metainfo "info" dictionary).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace openace::transport::bencode {

class Value;
using List = std::vector<Value>;
// Kept sorted by key (raw byte order), keys unique.
using Dict = std::vector<std::pair<std::string, Value>>;

class Value {
public:
    enum class Type { Integer, String, List, Dict };

    Value() : v_(std::int64_t{0}) {}
    Value(std::int64_t i) : v_(i) {}
    Value(int i) : v_(std::int64_t{i}) {}
    Value(std::string s) : v_(std::move(s)) {}
    Value(std::string_view s) : v_(std::string(s)) {}
    Value(const char *s) : v_(std::string(s)) {}
    Value(List l) : v_(std::move(l)) {}
    // Sorts the entries; a duplicate key keeps the last value.
    Value(Dict d);

    Type type() const noexcept { return static_cast<Type>(v_.index()); }
    bool is_int() const noexcept { return type() == Type::Integer; }
    bool is_string() const noexcept { return type() == Type::String; }
    bool is_list() const noexcept { return type() == Type::List; }
    bool is_dict() const noexcept { return type() == Type::Dict; }

    // Typed access; throw openace::Error(INVAL, "bencode", "get") on the wrong type.
    std::int64_t as_int() const;
    const std::string &as_string() const;
    const List &as_list() const;
    List &as_list();
    const Dict &as_dict() const;

    // Dictionary lookup (binary search); nullptr when absent or not a dict.
    const Value *find(std::string_view key) const noexcept;
    // Inserts or replaces a key, keeping the dictionary sorted.  Turns a
    // non-dict value into an empty dict first.
    Value &set(std::string_view key, Value v);

    // Byte span [begin, end) in the input this value was decoded from
    // (0, 0 for values built in memory).
    std::size_t span_begin() const noexcept { return begin_; }
    std::size_t span_end() const noexcept { return end_; }

    friend bool operator==(const Value &a, const Value &b) { return a.v_ == b.v_; }

private:
    friend class Decoder;
    std::variant<std::int64_t, std::string, List, Dict> v_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

struct Limits {
    std::size_t max_depth = 64;               // nesting of lists/dicts
    std::size_t max_size = 16u * 1024 * 1024; // input bytes
    std::size_t max_items = 1'000'000;        // values in total
    // false: dictionary keys may arrive unsorted or repeated (payloads from
    // other clients); a repeated key keeps its last value and the decoded
    // dictionary is sorted, so it no longer re-encodes to the input bytes.
    bool require_sorted_keys = true;
};

// Decodes exactly one value spanning all of `in`.  Throws
// openace::Error(Errc::PARSE, "bencode", "decode", "at byte N: <what>").
Value decode(std::string_view in, const Limits &limits = {});

// Canonical encoding (dict keys in sorted order).
std::string encode(const Value &v);
void encode_to(std::string &out, const Value &v);

// The exact bytes of `v` inside the input it was decoded from.
std::string_view raw(std::string_view input, const Value &v);
// The raw bytes of top-level dictionary key `key` in `input` (decoded with
// default limits); throws PARSE when the input is invalid or the key absent.
std::string_view raw_span(std::string_view input, std::string_view key);

} // namespace openace::transport::bencode
