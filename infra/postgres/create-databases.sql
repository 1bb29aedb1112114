-- Database-per-service on one server. The services also create their database when it is
-- missing; this script only makes a fresh compose volume ready before they start.
CREATE DATABASE inventory;
CREATE DATABASE orders;
CREATE DATABASE loyalty;
