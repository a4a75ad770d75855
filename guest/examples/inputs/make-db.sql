-- The demo database of the sqlite example, built deterministically (same SQLite version → same bytes):
--   guest/examples/bin/sqlite --create DB < guest/examples/inputs/make-db.sql
-- Small tables of every SQLite type, plus a generated 10,000-row table with an index for benchmarks.
PRAGMA page_size = 4096;
PRAGMA journal_mode = DELETE;
BEGIN;

CREATE TABLE planets (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  mass_earths REAL NOT NULL,   -- mass relative to Earth
  radius_km REAL NOT NULL,
  orbit_days REAL NOT NULL,
  rings INTEGER NOT NULL,
  note TEXT                    -- NULL for most
);
INSERT INTO planets VALUES
  (1, 'Mercury', 'terrestrial', 0.0553, 2439.7, 87.969, 0, NULL),
  (2, 'Venus', 'terrestrial', 0.815, 6051.8, 224.701, 0, 'rotates "backwards"'),
  (3, 'Earth', 'terrestrial', 1.0, 6371.0, 365.256, 0, 'home'),
  (4, 'Mars', 'terrestrial', 0.107, 3389.5, 686.98, 0, NULL),
  (5, 'Jupiter', 'gas giant', 317.8, 69911.0, 4332.59, 1, NULL),
  (6, 'Saturn', 'gas giant', 95.2, 58232.0, 10759.22, 1, 'rings of ice' || char(10) || 'and rock'),
  (7, 'Uranus', 'ice giant', 14.5, 25362.0, 30688.5, 1, NULL),
  (8, 'Neptune', 'ice giant', 17.1, 24622.0, 60182.0, 1, 'Ünsichtbar für das Auge');

CREATE TABLE moons (
  id INTEGER PRIMARY KEY,
  planet_id INTEGER NOT NULL REFERENCES planets(id),
  name TEXT NOT NULL,
  radius_km REAL,
  discovered INTEGER           -- year; NULL for the Moon
);
INSERT INTO moons (planet_id, name, radius_km, discovered) VALUES
  (3, 'Moon', 1737.4, NULL),
  (4, 'Phobos', 11.27, 1877), (4, 'Deimos', 6.2, 1877),
  (5, 'Io', 1821.6, 1610), (5, 'Europa', 1560.8, 1610), (5, 'Ganymede', 2634.1, 1610), (5, 'Callisto', 2410.3, 1610),
  (6, 'Titan', 2574.7, 1655), (6, 'Enceladus', 252.1, 1789), (6, 'Mimas', 198.2, 1789),
  (7, 'Titania', 788.4, 1787), (7, 'Oberon', 761.4, 1787), (7, 'Miranda', 235.8, 1948),
  (8, 'Triton', 1353.4, 1846), (8, 'Nereid', 170.0, 1949);

CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB);
INSERT INTO blobs VALUES (1, x'00017f80ff'), (2, zeroblob(4)), (3, NULL);

-- 10,000 deterministic rows: a linear congruential generator, no random().
CREATE TABLE numbers (n INTEGER PRIMARY KEY, square INTEGER NOT NULL, lcg INTEGER NOT NULL, word TEXT NOT NULL);
WITH RECURSIVE seq(n, x) AS (
  SELECT 1, 12345
  UNION ALL
  SELECT n + 1, (x * 1103515245 + 12345) % 2147483648 FROM seq WHERE n < 10000
)
INSERT INTO numbers SELECT n, n * n, x, printf('w%04d-%s', n % 1000, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26, 3)) FROM seq;
CREATE INDEX numbers_lcg ON numbers(lcg);

COMMIT;
