SELECT p.name, (SELECT count(*) FROM moons m WHERE m.planet_id = p.id) AS moons, count(n.n) AS numbers, sum(n.square % 7) AS s
FROM planets p JOIN numbers n ON n.n % 8 + 1 = p.id
WHERE n.lcg < 200000000
GROUP BY p.id ORDER BY numbers DESC, p.name;
