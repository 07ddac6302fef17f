"""In-app offers: the inbox consumer stores IN_APP offer decisions; the API reads and updates them."""
