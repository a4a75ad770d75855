-- The benchmark's 10-line script: word counts over a generated list, the top five printed.
local words, count, keys = {}, {}, {}
for i = 1, 300 do words[#words + 1] = "w" .. (i * 7919) % 97 end
for _, w in ipairs(words) do count[w] = (count[w] or 0) + 1 end
for k in pairs(count) do keys[#keys + 1] = k end
table.sort(keys, function(a, b) return count[a] > count[b] or (count[a] == count[b] and a < b) end)
for i = 1, 5 do print(keys[i], count[keys[i]]) end
print(string.format("%d distinct words in %d", #keys, #words))
print(("checksum %x"):format(#table.concat(words, " ") * 31 % 65521))
print(math.max(table.unpack({ 3, 1, 4, 1, 5, 9, 2, 6 })), #("x"):rep(10, ","))
