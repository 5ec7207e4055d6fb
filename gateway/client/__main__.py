"""``python -m gateway.client``: the client commands alone, without the operator's."""

from gateway.client.cli import main

if __name__ == "__main__":
    main()
