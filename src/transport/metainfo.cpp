#include "transport/metainfo.hpp"

#include "core/error.hpp"
#include "core/sha1.hpp"

#include <limits>

namespace openace::transport {

namespace b = bencode;

namespace {

template <class... Args>
[[noreturn]] void bad(std::string_view field, fmt::format_string<Args...> f, Args &&...args)
{
    throw_errorf(Errc::PARSE, "metainfo", "parse", "field '{}': {}", field,
                 fmt::format(f, std::forward<Args>(args)...));
}

const b::Value &need(const b::Value &d, std::string_view key, std::string_view field)
{
    const b::Value *v = d.find(key);
    if (!v)
        bad(field, "missing");
    return *v;
}

const std::string &need_string(const b::Value &v, std::string_view field)
{
    if (!v.is_string())
        bad(field, "expected a string");
    return v.as_string();
}

std::int64_t need_int(const b::Value &v, std::string_view field)
{
    if (!v.is_int())
        bad(field, "expected an integer");
    return v.as_int();
}

// A safe relative path component.
const char *component_problem(std::string_view c)
{
    if (c.empty())
        return "empty path component";
    if (c == "." || c == "..")
        return "path component '.' or '..'";
    for (char ch : c) {
        if (ch == '/' || ch == '\\')
            return "path component contains a separator";
        if (ch == '\0')
            return "path component contains NUL";
    }
    if (c.size() >= 2 && c[1] == ':')
        return "path component looks like a drive letter";
    return nullptr;
}

Metainfo parse_info(const b::Value &info, std::string_view raw_info)
{
    Metainfo m;
    if (!info.is_dict())
        bad("info", "expected a dictionary");
    m.name = need_string(need(info, "name", "info.name"), "info.name");
    if (const char *p = component_problem(m.name))
        bad("info.name", "{}", p);

    m.piece_length = need_int(need(info, "piece length", "info.piece length"), "info.piece length");
    if (m.piece_length <= 0)
        bad("info.piece length", "must be > 0");

    m.pieces = need_string(need(info, "pieces", "info.pieces"), "info.pieces");
    if (m.pieces.size() % 20 != 0)
        bad("info.pieces", "length {} is not a multiple of 20", m.pieces.size());

    const b::Value *len = info.find("length");
    const b::Value *files = info.find("files");
    if (len && files)
        bad("info.files", "both 'length' and 'files' present");
    if (!len && !files)
        bad("info.length", "missing (neither 'length' nor 'files')");

    constexpr auto imax = std::numeric_limits<std::int64_t>::max();
    if (len) {
        std::int64_t l = need_int(*len, "info.length");
        if (l < 0)
            bad("info.length", "must be >= 0");
        m.files.push_back(FileEntry{{}, l, 0});
        m.total_length = l;
    } else {
        m.multi_file = true;
        if (!files->is_list())
            bad("info.files", "expected a list");
        const b::List &fl = files->as_list();
        if (fl.empty())
            bad("info.files", "empty list");
        for (std::size_t i = 0; i < fl.size(); ++i) {
            std::string fld = fmt::format("info.files[{}]", i);
            const b::Value &f = fl[i];
            if (!f.is_dict())
                bad(fld, "expected a dictionary");
            std::string lf = fld + ".length";
            std::int64_t l = need_int(need(f, "length", lf), lf);
            if (l < 0)
                bad(lf, "must be >= 0");
            std::string pf = fld + ".path";
            const b::Value &pv = need(f, "path", pf);
            if (!pv.is_list())
                bad(pf, "expected a list");
            FileEntry fe;
            for (const b::Value &c : pv.as_list()) {
                const std::string &s = need_string(c, pf);
                if (const char *p = component_problem(s))
                    bad(pf, "{}", p);
                fe.path.push_back(s);
            }
            if (fe.path.empty())
                bad(pf, "empty path");
            if (l > imax - m.total_length)
                bad(lf, "total length overflows");
            fe.length = l;
            fe.offset = m.total_length;
            m.total_length += l;
            m.files.push_back(std::move(fe));
        }
    }
    if (m.total_length == 0)
        bad(m.multi_file ? "info.files" : "info.length", "torrent has no data");
    std::int64_t want = m.total_length / m.piece_length + (m.total_length % m.piece_length != 0);
    if (static_cast<std::int64_t>(m.piece_count()) != want)
        bad("info.pieces", "{} hashes for {} bytes in pieces of {} (expected {})", m.piece_count(),
            m.total_length, m.piece_length, want);

    m.info_bytes = std::string(raw_info);
    m.infohash = sha1(raw_info);
    return m;
}

} // namespace

std::int64_t Metainfo::piece_size(std::size_t i) const noexcept
{
    if (i >= piece_count())
        return 0;
    std::int64_t start = static_cast<std::int64_t>(i) * piece_length;
    std::int64_t left = total_length - start;
    return left < piece_length ? left : piece_length;
}

std::string_view Metainfo::piece_hash(std::size_t i) const noexcept
{
    if (i >= piece_count())
        return {};
    return std::string_view(pieces).substr(i * 20, 20);
}

std::vector<std::string> Metainfo::trackers() const
{
    std::vector<std::string> out;
    auto add = [&](const std::string &t) {
        for (const auto &o : out)
            if (o == t)
                return;
        out.push_back(t);
    };
    for (const auto &tier : announce_list)
        for (const auto &t : tier)
            add(t);
    if (out.empty() && !announce.empty())
        add(announce);
    return out;
}

InfoHash sha1(std::string_view data)
{
    return core::Sha1::hash(data);
}

Metainfo parse_metainfo(std::string_view torrent)
{
    b::Value top = b::decode(torrent);
    if (!top.is_dict())
        bad("(top level)", "expected a dictionary");
    const b::Value &info = need(top, "info", "info");
    Metainfo m = parse_info(info, b::raw(torrent, info));
    if (const b::Value *a = top.find("announce"))
        m.announce = need_string(*a, "announce");
    if (const b::Value *al = top.find("announce-list")) {
        if (!al->is_list())
            bad("announce-list", "expected a list of lists");
        for (const b::Value &tier : al->as_list()) {
            if (!tier.is_list())
                bad("announce-list", "expected a list of lists");
            std::vector<std::string> t;
            for (const b::Value &u : tier.as_list())
                t.push_back(need_string(u, "announce-list"));
            if (!t.empty())
                m.announce_list.push_back(std::move(t));
        }
    }
    return m;
}

Metainfo parse_info_dict(std::string_view info)
{
    b::Value v = b::decode(info);
    return parse_info(v, info);
}

std::vector<std::pair<std::int64_t, std::int64_t>> file_offsets(const Metainfo &m)
{
    std::vector<std::pair<std::int64_t, std::int64_t>> out;
    out.reserve(m.files.size());
    for (const auto &f : m.files)
        out.emplace_back(f.offset, f.offset + f.length);
    return out;
}

std::string build_metainfo(std::string_view name, const std::vector<BuildFile> &files,
                           std::int64_t piece_length, const std::vector<std::string> &trackers)
{
    auto fail = [](std::string_view what) {
        throw_errorf(Errc::INVAL, "metainfo", "build", "{}", what);
    };
    if (piece_length <= 0)
        fail("piece length must be > 0");
    if (const char *p = component_problem(name))
        fail(fmt::format("name: {}", p));
    if (files.empty())
        fail("no files");
    bool single = files.size() == 1 && files[0].path.empty();

    // Hash the concatenation piece by piece without copying whole files.
    std::string pieces;
    std::string buf;
    std::int64_t total = 0;
    const auto plen = static_cast<std::size_t>(piece_length);
    for (const auto &f : files) {
        if (!single) {
            if (f.path.empty())
                fail("multi-file entry with an empty path");
            for (const auto &c : f.path)
                if (const char *p = component_problem(c))
                    fail(fmt::format("path: {}", p));
        }
        std::string_view d = f.data;
        total += static_cast<std::int64_t>(d.size());
        while (!d.empty()) {
            if (buf.empty() && d.size() >= plen) {
                InfoHash h = sha1(d.substr(0, plen));
                pieces.append(reinterpret_cast<const char *>(h.data()), h.size());
                d.remove_prefix(plen);
                continue;
            }
            std::size_t take = std::min(plen - buf.size(), d.size());
            buf.append(d.substr(0, take));
            d.remove_prefix(take);
            if (buf.size() == plen) {
                InfoHash h = sha1(buf);
                pieces.append(reinterpret_cast<const char *>(h.data()), h.size());
                buf.clear();
            }
        }
    }
    if (!buf.empty()) {
        InfoHash h = sha1(buf);
        pieces.append(reinterpret_cast<const char *>(h.data()), h.size());
    }
    if (total == 0)
        fail("torrent has no data");

    std::vector<TorrentFile> entries;
    for (const auto &f : files)
        entries.push_back({f.path, static_cast<std::int64_t>(f.data.size())});
    return encode_torrent(name, piece_length, std::move(pieces), entries, single, trackers);
}

std::string encode_torrent(std::string_view name, std::int64_t piece_length, std::string pieces,
                           const std::vector<TorrentFile> &files, bool single,
                           const std::vector<std::string> &trackers)
{
    b::Value info{b::Dict{}};
    info.set("name", b::Value(name));
    info.set("piece length", b::Value(piece_length));
    info.set("pieces", b::Value(std::move(pieces)));
    if (single) {
        info.set("length", b::Value(files.empty() ? 0 : files[0].length));
    } else {
        b::List fl;
        for (const auto &f : files) {
            b::List path;
            for (const auto &c : f.path)
                path.emplace_back(c);
            b::Value fe{b::Dict{}};
            fe.set("length", b::Value(f.length));
            fe.set("path", b::Value(std::move(path)));
            fl.push_back(std::move(fe));
        }
        info.set("files", b::Value(std::move(fl)));
    }
    b::Value top{b::Dict{}};
    if (!trackers.empty())
        top.set("announce", b::Value(trackers[0]));
    if (trackers.size() > 1) {
        b::List al;
        for (const auto &t : trackers)
            al.emplace_back(b::List{b::Value(t)});
        top.set("announce-list", b::Value(std::move(al)));
    }
    top.set("info", std::move(info));
    return b::encode(top);
}

} // namespace openace::transport
