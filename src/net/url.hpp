// Percent-encoding and query strings (RFC 3986 §2.1, WHATWG
// application/x-www-form-urlencoded for '+').  Pure functions; none of them
// throws on bad input: a malformed escape gives std::nullopt from
// percent_decode and leaves that component raw in parse_query.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace openace::net {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// "%41b%20c" -> "Ab c".  std::nullopt when a '%' is not followed by two hex
// digits.  plus_as_space turns '+' into ' ' (query strings, not paths).
std::optional<std::string> percent_decode(std::string_view s, bool plus_as_space = false);

// Escapes every byte outside RFC 3986 "unreserved" (A-Z a-z 0-9 - . _ ~) and
// outside `safe` as %XX (upper-case hex).  percent_encode("a b/c", "/") ->
// "a%20b/c".
std::string percent_encode(std::string_view s, std::string_view safe = {});

// "a=1&b=%20x&c" -> {a,1} {b," x"} {c,""}, in order, duplicates kept.  A
// leading '?' is skipped, empty segments ("a&&b") are skipped, '+' is a
// space.  A key or value with a bad escape is kept as it was sent.  At most
// max_pairs pairs are returned; the rest of the input is ignored.
QueryParams parse_query(std::string_view query, size_t max_pairs = 256);

// The first value of `name`, if any.
std::optional<std::string> query_value(const QueryParams &params, std::string_view name);

// Inverse of parse_query: "a=1&b=%20x" (keys and values fully escaped).
std::string build_query(const QueryParams &params);

// A request target split into its raw path and query (without '?'); any
// fragment is dropped.  Handles origin-form ("/p?q"), absolute-form
// ("http://host/p?q" -> "/p", "q") and "*".  An absolute-form target without
// a path gives "/".
struct TargetParts {
    std::string_view path;
    std::string_view query;
};
TargetParts split_target(std::string_view target);

} // namespace openace::net
