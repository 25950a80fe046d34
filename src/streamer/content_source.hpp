// What a player asks to watch (reference §1, §2.2): the source selector of
// /ace/getstream, /ace/manifest.m3u8, /server/api and the TCP API's START,
// resolved to a live stream (a content id, maybe with its descriptor) or a
// torrent (an infohash, maybe with its metainfo, trackers and peers) and a
// file index.
//
// Selector parameters, in Ace's order (the first present wins):
//   content_id (alias id)  40 hex, acestream://<id>, acestream:?content_id=<id>:
//                          a live stream, or a torrent whose content id this
//                          engine gave out (get_content_id: its infohash)
//   infohash               40 hex (or 32 base32); a live stream when the live
//                          engine knows that id (it plays or broadcasts it),
//                          else a torrent
//   url                    a transport file: .acelive descriptor or .torrent,
//                          file://PATH, a local path, or http://
//   magnet                 magnet:?xt=urn:btih:...
//   data                   a transport file, base64
// plus _idx (file index of a torrent; default the largest file).
//
// Pure functions; the caller fetches http:// URLs.
#pragma once

#include "live/live_descriptor.hpp"
#include "transport/magnet.hpp"
#include "transport/metainfo.hpp"
#include "transport/peer_address.hpp"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace openace::streamer {

using Params = std::map<std::string, std::string>;

// A request's query as Params (the first value of a repeated name wins).
Params params_of(const std::vector<std::pair<std::string, std::string>> &query);

struct ContentSource {
    bool live = false;
    // live
    live::ContentId content_id{};
    std::string descriptor; // bencoded, when the selector carried it
    // torrent
    transport::InfoHash infohash{};
    std::optional<transport::Metainfo> meta;
    std::vector<std::string> trackers;
    std::vector<transport::PeerAddress> peers;
    std::string name;
    int file_index = -1; // -1: the largest file

    // The session id: content id or infohash, 40 lowercase hex.
    std::string hex() const;
};

// The first selector parameter present and its value: {"url", "file:///x"}.
// Throws Error(INVAL, "streamer", "source", "missing parameter: one of
// content_id, id, infohash, url, magnet, data").
std::pair<std::string, std::string> pick_selector(const Params &params);

// Resolves every selector except an http:// url (needs_fetch() says so).
// `is_live(id)`: whether the live engine knows that id (asked for
// infohash); `is_torrent(id)`: whether a content_id names a torrent this
// engine knows (one get_content_id or a session gave out).  Throws
// Error(INVAL, "streamer", "source", "...") naming the bad parameter and
// why ("parameter 'infohash': expected 40 hexadecimal digits").
using IdTest = std::function<bool(const transport::InfoHash &)>;
ContentSource resolve_source(const Params &params, const IdTest &is_live, const IdTest &is_torrent = {});

// True when the selector is a url with the http:// scheme.
bool needs_fetch(const Params &params);

// A transport file's bytes (from url or data): a live descriptor or a
// .torrent.  `origin` names it in errors ("parameter 'url'").  Throws
// Error(INVAL) saying what it is not.
ContentSource classify_transport_file(std::string_view bytes, const std::string &origin);

// Applies _idx to a resolved source (Error(INVAL) when not an integer >= 0).
void apply_file_index(ContentSource &s, const Params &params);

// RFC 4648 base64 (padding optional, whitespace refused); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view text);

// Largest transport file accepted from url/data.
inline constexpr std::size_t kMaxTransportFile = 16u << 20;

} // namespace openace::streamer
