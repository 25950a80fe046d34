// A small blocking HTTP/1.1 client for tests: raw POSIX sockets, bounded by a
// receive timeout, so a broken server fails a test instead of hanging it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

namespace testhttp {

struct Response {
    int status = 0;
    std::map<std::string, std::string> headers; // lowercased names
    std::string body;
    std::string raw;
};

inline int connect_to(const std::string &hostport, double timeout_s = 10)
{
    auto colon = hostport.rfind(':');
    std::string host = hostport.substr(0, colon);
    int port = std::stoi(hostport.substr(colon + 1));
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{long(timeout_s), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(uint16_t(port));
    ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot connect to " + hostport);
    }
    return fd;
}

inline void send_all(int fd, const std::string &data)
{
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        off += size_t(n);
    }
}

// Reads until the peer closes (or the receive timeout).
inline std::string read_all(int fd)
{
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

inline Response parse(const std::string &raw)
{
    Response r;
    r.raw = raw;
    auto head_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos)
        return r;
    r.status = std::stoi(raw.substr(9, 3));
    size_t pos = raw.find("\r\n") + 2;
    while (pos < head_end) {
        auto eol = raw.find("\r\n", pos);
        auto line = raw.substr(pos, eol - pos);
        auto c = line.find(':');
        std::string name = line.substr(0, c);
        for (auto &ch : name)
            ch = char(std::tolower(ch));
        auto v = line.substr(c + 1);
        while (!v.empty() && v[0] == ' ')
            v.erase(0, 1);
        r.headers[name] = v;
        pos = eol + 2;
    }
    std::string body = raw.substr(head_end + 4);
    if (r.headers["transfer-encoding"] == "chunked") {
        std::string decoded;
        size_t p = 0;
        for (;;) {
            auto eol = body.find("\r\n", p);
            if (eol == std::string::npos)
                break;
            size_t n = std::stoul(body.substr(p, eol - p), nullptr, 16);
            if (n == 0)
                break;
            decoded += body.substr(eol + 2, n);
            p = eol + 2 + n + 2;
        }
        body = decoded;
    }
    r.body = body;
    return r;
}

// One request on its own connection ("Connection: close").
inline Response request(const std::string &hostport, const std::string &method,
                        const std::string &target, const std::string &extra_headers = "")
{
    int fd = connect_to(hostport);
    send_all(fd, method + " " + target + " HTTP/1.1\r\nHost: " + hostport +
                     "\r\nConnection: close\r\n" + extra_headers + "\r\n");
    auto raw = read_all(fd);
    ::close(fd);
    return parse(raw);
}

inline Response get(const std::string &hostport, const std::string &target)
{
    return request(hostport, "GET", target);
}

// Sends raw bytes and returns whatever comes back before the server closes.
inline Response raw_exchange(const std::string &hostport, const std::string &bytes)
{
    int fd = connect_to(hostport);
    send_all(fd, bytes);
    auto raw = read_all(fd);
    ::close(fd);
    return parse(raw);
}

} // namespace testhttp
