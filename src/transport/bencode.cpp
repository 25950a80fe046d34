#include "transport/bencode.hpp"

#include "core/error.hpp"

#include <algorithm>
#include <limits>

namespace openace::transport::bencode {

namespace {

[[noreturn]] void wrong_type(const char *want)
{
    throw_errorf(Errc::INVAL, "bencode", "get", "value is not {}", want);
}

bool key_less(const std::pair<std::string, Value> &e, std::string_view k)
{
    return std::string_view(e.first) < k;
}

} // namespace

Value::Value(Dict d)
{
    std::stable_sort(d.begin(), d.end(),
                     [](const auto &a, const auto &b) { return a.first < b.first; });
    Dict out;
    out.reserve(d.size());
    for (auto &e : d) {
        if (!out.empty() && out.back().first == e.first)
            out.back().second = std::move(e.second);
        else
            out.push_back(std::move(e));
    }
    v_ = std::move(out);
}

std::int64_t Value::as_int() const
{
    if (!is_int())
        wrong_type("an integer");
    return std::get<std::int64_t>(v_);
}

const std::string &Value::as_string() const
{
    if (!is_string())
        wrong_type("a string");
    return std::get<std::string>(v_);
}

const List &Value::as_list() const
{
    if (!is_list())
        wrong_type("a list");
    return std::get<List>(v_);
}

List &Value::as_list()
{
    if (!is_list())
        wrong_type("a list");
    return std::get<List>(v_);
}

const Dict &Value::as_dict() const
{
    if (!is_dict())
        wrong_type("a dictionary");
    return std::get<Dict>(v_);
}

const Value *Value::find(std::string_view key) const noexcept
{
    if (!is_dict())
        return nullptr;
    const Dict &d = std::get<Dict>(v_);
    auto it = std::lower_bound(d.begin(), d.end(), key, key_less);
    if (it == d.end() || it->first != key)
        return nullptr;
    return &it->second;
}

Value &Value::set(std::string_view key, Value v)
{
    if (!is_dict())
        v_ = Dict{};
    Dict &d = std::get<Dict>(v_);
    auto it = std::lower_bound(d.begin(), d.end(), key, key_less);
    if (it != d.end() && it->first == key) {
        it->second = std::move(v);
        return it->second;
    }
    it = d.emplace(it, std::string(key), std::move(v));
    return it->second;
}

class Decoder {
public:
    Decoder(std::string_view in, const Limits &l) : in_(in), lim_(l) {}

    Value run()
    {
        if (in_.size() > lim_.max_size)
            fail(0, "input of {} bytes exceeds the limit of {} bytes", in_.size(), lim_.max_size);
        if (in_.empty())
            fail(0, "empty input");
        Value v = value(0);
        if (pos_ != in_.size())
            fail(pos_, "trailing data after the value");
        return v;
    }

private:
    template <class... Args>
    [[noreturn]] void fail(std::size_t at, fmt::format_string<Args...> f, Args &&...args)
    {
        throw_errorf(Errc::PARSE, "bencode", "decode", "at byte {}: {}", at,
                     fmt::format(f, std::forward<Args>(args)...));
    }

    int peek()
    {
        if (pos_ >= in_.size())
            fail(pos_, "unexpected end of input");
        return static_cast<unsigned char>(in_[pos_]);
    }

    static bool digit(int c) { return c >= '0' && c <= '9'; }

    // Digits up to `stop`; canonical (no leading zero unless the number is 0);
    // value must not exceed `max`.
    std::uint64_t number(char stop, std::uint64_t max, const char *what)
    {
        std::size_t start = pos_;
        std::uint64_t n = 0;
        while (pos_ < in_.size() && digit(peek())) {
            unsigned d = static_cast<unsigned>(peek() - '0');
            if (n > (max - d) / 10)
                fail(start, "{} overflows", what);
            n = n * 10 + d;
            ++pos_;
        }
        if (pos_ == start)
            fail(pos_, "expected digits in {}", what);
        if (pos_ - start > 1 && in_[start] == '0')
            fail(start, "{} has a leading zero", what);
        if (peek() != stop)
            fail(pos_, "expected '{}' after {}", stop, what);
        ++pos_;
        return n;
    }

    void count_item(std::size_t at)
    {
        if (++items_ > lim_.max_items)
            fail(at, "more than {} values", lim_.max_items);
    }

    Value value(std::size_t depth)
    {
        std::size_t start = pos_;
        int c = peek();
        count_item(start);
        Value v;
        if (c == 'i') {
            ++pos_;
            bool neg = false;
            if (peek() == '-') {
                neg = true;
                ++pos_;
            }
            constexpr auto imax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
            std::size_t dstart = pos_;
            std::uint64_t n = number('e', neg ? imax + 1 : imax, "integer");
            if (neg && n == 0)
                fail(dstart, "negative zero is not canonical");
            if (neg)
                v.v_ = n == imax + 1 ? std::numeric_limits<std::int64_t>::min()
                                     : -static_cast<std::int64_t>(n);
            else
                v.v_ = static_cast<std::int64_t>(n);
        } else if (digit(c)) {
            v.v_ = string();
        } else if (c == 'l' || c == 'd') {
            if (depth >= lim_.max_depth)
                fail(start, "nesting deeper than {} levels", lim_.max_depth);
            ++pos_;
            if (c == 'l') {
                List l;
                while (peek() != 'e')
                    l.push_back(value(depth + 1));
                v.v_ = std::move(l);
            } else {
                Dict d;
                while (peek() != 'e') {
                    std::size_t kpos = pos_;
                    if (!digit(peek()))
                        fail(kpos, "dictionary key must be a string");
                    count_item(kpos);
                    std::string k = string();
                    if (lim_.require_sorted_keys && !d.empty() && !(d.back().first < k))
                        fail(kpos, "{}", d.back().first == k ? "duplicate dictionary key"
                                                       : "dictionary keys not sorted");
                    Value val = value(depth + 1);
                    d.emplace_back(std::move(k), std::move(val));
                }
                if (lim_.require_sorted_keys)
                    v.v_ = std::move(d);
                else
                    v.v_ = std::move(Value(std::move(d)).v_);
            }
            ++pos_; // 'e'
        } else {
            fail(start, "unexpected byte 0x{:02x}", c);
        }
        v.begin_ = start;
        v.end_ = pos_;
        return v;
    }

    std::string string()
    {
        std::size_t start = pos_;
        std::uint64_t len = number(':', std::numeric_limits<std::uint64_t>::max(), "string length");
        if (len > in_.size() - pos_)
            fail(start, "string length {} exceeds the {} bytes left", len, in_.size() - pos_);
        std::string s(in_.substr(pos_, static_cast<std::size_t>(len)));
        pos_ += static_cast<std::size_t>(len);
        return s;
    }

    std::string_view in_;
    const Limits &lim_;
    std::size_t pos_ = 0;
    std::size_t items_ = 0;
};

Value decode(std::string_view in, const Limits &limits)
{
    return Decoder(in, limits).run();
}

void encode_to(std::string &out, const Value &v)
{
    switch (v.type()) {
    case Value::Type::Integer:
        fmt::format_to(std::back_inserter(out), "i{}e", v.as_int());
        break;
    case Value::Type::String: {
        const std::string &s = v.as_string();
        fmt::format_to(std::back_inserter(out), "{}:", s.size());
        out += s;
        break;
    }
    case Value::Type::List:
        out += 'l';
        for (const Value &e : v.as_list())
            encode_to(out, e);
        out += 'e';
        break;
    case Value::Type::Dict:
        out += 'd';
        for (const auto &[k, e] : v.as_dict()) {
            fmt::format_to(std::back_inserter(out), "{}:", k.size());
            out += k;
            encode_to(out, e);
        }
        out += 'e';
        break;
    }
}

std::string encode(const Value &v)
{
    std::string out;
    encode_to(out, v);
    return out;
}

std::string_view raw(std::string_view input, const Value &v)
{
    if (v.span_end() > input.size() || v.span_begin() > v.span_end())
        throw_errorf(Errc::INVAL, "bencode", "raw", "value span [{}, {}) is outside the input",
                     v.span_begin(), v.span_end());
    return input.substr(v.span_begin(), v.span_end() - v.span_begin());
}

std::string_view raw_span(std::string_view input, std::string_view key)
{
    Value top = decode(input);
    if (!top.is_dict())
        throw_errorf(Errc::PARSE, "bencode", "decode", "at byte 0: top level is not a dictionary");
    const Value *v = top.find(key);
    if (!v)
        throw_errorf(Errc::PARSE, "bencode", "decode", "key '{}' not found", key);
    return raw(input, *v);
}

} // namespace openace::transport::bencode
