# Counts the words of every input file. Ocean's layout: each dataset's files are
# /data/inputs/<did>/<n>, the DIDs are in $DIDS; results go to /data/outputs.
total=0
for f in /data/inputs/*/*; do
    words=$(wc -w < "$f")
    echo "counted $words words"
    total=$((total + words))
done
echo "$total" > /data/outputs/count.txt
