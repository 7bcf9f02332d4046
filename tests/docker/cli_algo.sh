echo "hello from the cli"
