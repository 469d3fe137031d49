// The only translation unit that compiles Asio and Beast (separate compilation); every other
// target links relay_asio and includes the headers only.
#include <utility>  // Boost 1.74's asio headers use std::exchange without including it.

#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
