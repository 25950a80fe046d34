// Embedding OpenAce from C++: the same probe through openace::Engine.
//   c++ -std=c++20 probe.cpp $(pkg-config --cflags --libs openace) -o probe
#include <openace/engine.hpp>

#include <iostream>

int main()
{
    try {
        openace::Engine engine(R"({"engine":{"http_address":"127.0.0.1:0"},"logging":{"console":false}})");
        std::cout << "HTTP API on http://" << engine.http_address() << "\n";
        int64_t job = engine.submit_job(R"({"type":"probe","hardware":false})");
        while (auto ev = engine.wait_event(-1)) {
            if (ev->id == OPENACE_EVENT_JOB_STATE && ev->job_id == job && ev->final) {
                std::cout << ev->json << "\n";
                return ev->error == 0 ? 0 : 1;
            }
        }
    } catch (const openace::Error &e) {
        std::cerr << openace::error_name(e.code()) << ": " << e.what() << "\n";
    }
    return 1;
}
